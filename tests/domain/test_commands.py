from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.commands import Command, Match, match_command, normalise_text

COMMAND_WORDS = {
    Command.INFO: ["client", "info"],
    Command.SMS_STOP: ["client", "sms", "stop"],
    Command.SMS_START: ["client", "sms", "start"],
}


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("CLIENT info", Command.INFO),
        ("client info", Command.INFO),
        ("CLIENT INFO", Command.INFO),
        ("Client Info", Command.INFO),
        ("CLIENT sms stop", Command.SMS_STOP),
        ("CLIENT sms start", Command.SMS_START),
        ("  client   SMS  Stop ", Command.SMS_STOP),
        ("\tclient\nsms\r\nstart\t", Command.SMS_START),
        ("client\u00a0info", Command.INFO),
        ("client\u2003\u3000info", Command.INFO),
    ],
)
def test_commands_match_in_any_case_and_spacing(text: str, command: Command) -> None:
    assert match_command(text) == Match(command, None)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("\u0421LI\u0415N\u0422 info", Command.INFO),  # Cyrillic С, Е, Т
        ("\u0421\u041cIENT info", None),  # Cyrillic М is not L
        ("CLIENT \u0405\u041c\u0405 \u0405\u0422\u041e\u0420", Command.SMS_STOP),  # Ѕ М Т О Р
        ("CL\u0406\u0415NT SMS ST\u0410RT", Command.SMS_START),  # І Е А
        ("\u0441lient info", Command.INFO),  # lowercase Cyrillic с
        ("client \u0455m\u0455 \u0455\u0442\u0430r\u0442", Command.SMS_START),  # ѕ т а
        ("CLI\u0395N\u03a4 info", Command.INFO),  # Greek Ε, Τ
        (
            "\uff23\uff2c\uff29\uff25\uff2e\uff34 \uff49\uff4e\uff46\uff4f",
            Command.INFO,
        ),  # fullwidth
        ("cli\u200bent info", Command.INFO),  # zero-width space inside a word
    ],
)
def test_look_alike_letters_are_read_as_latin(text: str, command: Command | None) -> None:
    assert match_command(text).command == command


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty message"),
        ("   \n\t", "empty message"),
        ("\u200b", "empty message"),
        ("hello", "not a command: does not start with CLIENT"),
        ("клиент инфо", "not a command: does not start with CLIENT"),
        ("clientinfo", "not a command: does not start with CLIENT"),
        ("info client", "not a command: does not start with CLIENT"),
        ("client", "incomplete CLIENT command: nothing after CLIENT"),
        ("client infos", "unknown CLIENT command"),
        ("client info.", "unknown CLIENT command"),
        ("client help", "unknown CLIENT command"),
        ("client info now", "unexpected words after CLIENT info"),
        ("client sms", "incomplete CLIENT command: sms without stop or start"),
        ("client sms stop now", "unexpected words after CLIENT sms stop"),
        ("client sms start please", "unexpected words after CLIENT sms start"),
        ("client sms pause", "unknown CLIENT sms command"),
        ("client sms-stop", "unknown CLIENT command"),
    ],
)
def test_anything_else_is_not_a_command_and_says_why(text: str, reason: str) -> None:
    assert match_command(text) == Match(None, reason)


def test_normalised_text() -> None:
    assert normalise_text("  CLIENT \u00a0 SMS\t\nStop ") == "client sms stop"
    assert normalise_text("\u0421LI\u0415N\u0422") == "client"
    assert normalise_text("Straße") == "strasse"
    assert normalise_text("") == ""


def test_letters_without_latin_twin_stay_as_they_are() -> None:
    assert normalise_text("Щи Ждёшь") == "щи ждёшь"


spaces = st.text(alphabet=st.sampled_from(" \t\n\r\u00a0\u2009\u3000"), min_size=1, max_size=3)


def random_case(word: str, flips: list[bool]) -> str:
    padded = flips + [False] * len(word)
    return "".join(char.upper() if padded[index] else char for index, char in enumerate(word))


@settings(max_examples=100)
@given(
    st.sampled_from(list(COMMAND_WORDS)),
    st.lists(st.booleans(), max_size=20),
    st.lists(spaces, min_size=4, max_size=4),
)
def test_every_casing_and_spacing_of_a_command_matches(
    command: Command, flips: list[bool], gaps: list[str]
) -> None:
    words = [random_case(word, flips[index * 6 :]) for index, word in enumerate(COMMAND_WORDS[command])]
    text = gaps[0] + "".join(word + gap for word, gap in zip(words, gaps[1:], strict=False))
    assert match_command(text).command == command


@settings(max_examples=100)
@given(
    st.sampled_from(list(COMMAND_WORDS)),
    st.text(alphabet=st.characters(exclude_categories=("Z", "Cc", "Cf")), min_size=1, max_size=8),
)
def test_a_command_with_any_extra_word_is_not_a_command(command: Command, extra: str) -> None:
    text = " ".join(COMMAND_WORDS[command]) + " " + extra
    result = match_command(text)
    assert result.command is None
    assert result.reason


@settings(max_examples=100)
@given(st.text(max_size=40))
def test_any_text_gets_a_command_or_a_reason(text: str) -> None:
    result = match_command(text)
    assert (result.command is None) != (result.reason is None)
