from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from smsline.domain.gsm7 import is_gsm7
from smsline.domain.segments import count_segments
from smsline.domain.texts import (
    ACK_TEXT,
    LANGUAGES,
    PASSWORD_MASK,
    Language,
    ack_text,
    info_text,
    language_of,
    masked_info_text,
    not_registered_text,
    sms_started_text,
    sms_stopped_text,
)

CYRILLIC = re.compile("[а-яА-ЯёЁ]")

ALL_TEXTS: dict[str, Callable[[Language], str]] = {
    "ack": ack_text,
    "info": lambda lang: info_text(lang, personal_code="1234", login="ivanov", password="1a2b3c4d"),
    "masked info": lambda lang: masked_info_text(lang, personal_code="1234", login="ivanov"),
    "sms stopped": sms_stopped_text,
    "sms started": sms_started_text,
    "not registered": lambda lang: not_registered_text(lang, support_phone="+7 800 555-35-35"),
}


def test_english_acknowledgement_is_the_contract_text() -> None:
    assert ack_text("en") == (
        "Your request has been received. Wait for notification of the request being processed."
    )
    assert ACK_TEXT["en"] == ack_text("en")


def test_english_registration_data_is_the_spec_text() -> None:
    assert info_text("en", personal_code="1234", login="ivanov", password="1a2b3c4d") == (
        "REGISTRATION CENTER.\n"
        "Personal Code: 1234. CLIENT'S PORTAL: login: ivanov, password: 1a2b3c4d. "
        "Do not share your registration data with anyone."
    )


@pytest.mark.parametrize("lang", LANGUAGES)
def test_masked_registration_data_hides_only_the_password(lang: Language) -> None:
    masked = masked_info_text(lang, personal_code="1234", login="ivanov")
    real = info_text(lang, personal_code="1234", login="ivanov", password="s3cr3tpw")
    assert "s3cr3tpw" not in masked
    assert masked == real.replace("s3cr3tpw", PASSWORD_MASK)
    assert "ivanov" in masked
    assert "1234" in masked


def test_values_with_braces_are_inserted_literally() -> None:
    text = info_text("en", personal_code="{login}", login="a{0}b", password="{password}")
    assert "Personal Code: {login}." in text
    assert "login: a{0}b, password: {password}." in text


@pytest.mark.parametrize("name", list(ALL_TEXTS))
def test_every_text_exists_in_english_and_russian(name: str) -> None:
    english = ALL_TEXTS[name]("en")
    russian = ALL_TEXTS[name]("ru")
    assert english
    assert russian
    assert english != russian
    assert not CYRILLIC.search(english)
    assert CYRILLIC.search(russian)


@pytest.mark.parametrize("name", list(ALL_TEXTS))
def test_english_texts_are_sent_in_gsm7(name: str) -> None:
    assert is_gsm7(ALL_TEXTS[name]("en"))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_acknowledgement_is_one_sms(lang: Language) -> None:
    assert count_segments(ack_text(lang)) == 1


@pytest.mark.parametrize("lang", LANGUAGES)
def test_registration_data_carries_the_customer_values(lang: Language) -> None:
    text = info_text(lang, personal_code="987", login="petrov", password="pw")
    assert "987" in text
    assert "petrov" in text
    assert "pw" in text
    if lang == "ru":
        assert text.startswith("РЕГИСТРАЦИОННЫЙ ЦЕНТР.\n")
        assert "логин: petrov, пароль: pw" in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_opt_out_and_opt_in_replies_say_how_to_undo(lang: Language) -> None:
    assert "CLIENT sms start" in sms_stopped_text(lang)
    assert "CLIENT sms stop" in sms_started_text(lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_not_registered_reply_gives_the_support_phone(lang: Language) -> None:
    text = not_registered_text(lang, support_phone="+7 800 555-35-35")
    assert "+7 800 555-35-35" in text


@pytest.mark.parametrize(
    ("value", "lang"),
    [
        ("ru", "ru"),
        ("RU", "ru"),
        (" ru ", "ru"),
        ("en", "en"),
        ("de", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_of_a_customer(value: str | None, lang: Language) -> None:
    assert language_of(value) == lang
