from __future__ import annotations

from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from smsline.domain.msisdn import (
    InvalidMsisdn,
    _normalise_in_full,
    from_smpp_address,
    normalise_msisdn,
    to_smpp_address,
)


@pytest.mark.parametrize(
    "raw",
    [
        "8 908 622 87 79",
        "+7 (908) 622-87-79",
        "79086228779",
        "+79086228779",
        "8-908-622-87-79",
        "9086228779",
        "  +7 908 622 87 79\n",
        "8(908)6228779",
        "７９０８６２２８７７９",
    ],
)
def test_ways_of_writing_a_russian_number_give_one_e164(raw: str) -> None:
    assert normalise_msisdn(raw) == "+79086228779"


def test_landline_and_freephone_numbers_are_accepted() -> None:
    assert normalise_msisdn("8 (495) 123-45-67") == "+74951234567"
    assert normalise_msisdn("8 800 555 35 35") == "+78005553535"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("380501234567", "+380501234567"),
        ("0044 20 7946 0958", "+442079460958"),
        ("810 44 20 7946 0958", "+442079460958"),
    ],
)
def test_foreign_numbers_are_read_as_international(raw: str, expected: str) -> None:
    assert normalise_msisdn(raw) == expected


def test_default_region_reads_national_numbers() -> None:
    assert normalise_msisdn("020 7946 0958", default_region="GB") == "+442079460958"


@pytest.mark.parametrize(
    "raw", ["", "   ", "123", "+7 908", "8908622877a", "SCSERV", "+", "()", "8 908 622 87 79 ext 5"]
)
def test_invalid_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidMsisdn):
        normalise_msisdn(raw)


def test_rejection_says_what_was_wrong_in_words() -> None:
    with pytest.raises(InvalidMsisdn, match=r"^not a valid phone number for region RU: '123'$"):
        normalise_msisdn("123")


def test_invalid_msisdn_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalise_msisdn("abc")


def test_smpp_address_is_the_digits_without_plus() -> None:
    assert to_smpp_address("+79086228779") == "79086228779"


@pytest.mark.parametrize("value", ["79086228779", "+7 908 622 87 79", "", "+0123"])
def test_smpp_address_needs_e164(value: str) -> None:
    with pytest.raises(InvalidMsisdn):
        to_smpp_address(value)


def test_international_source_address_is_taken_as_it_is() -> None:
    assert from_smpp_address("79086228779", 1) == "+79086228779"
    assert from_smpp_address("+447700900123", 1) == "+447700900123"


@pytest.mark.parametrize(("addr", "ton"), [("89086228779", 0), ("9086228779", 2)])
def test_other_source_addresses_are_read_in_the_region(addr: str, ton: int) -> None:
    assert from_smpp_address(addr, ton) == "+79086228779"


@pytest.mark.parametrize(
    ("addr", "ton"),
    [("SCSERV", 5), ("", 1), ("0123456", 1), ("12", 1), ("7908abc", 1), ("900", 0)],
)
def test_source_address_that_is_no_phone_number_is_rejected(addr: str, ton: int) -> None:
    with pytest.raises(InvalidMsisdn):
        from_smpp_address(addr, ton)


russian_mobiles = st.integers(900_000_0000, 999_999_9999).map(str)


@settings(max_examples=60)
@given(russian_mobiles)
def test_every_writing_of_a_mobile_number_agrees(national: str) -> None:
    assume(phonenumbers.is_valid_number(phonenumbers.parse("+7" + national)))
    e164 = "+7" + national
    spaced = f"8 {national[:3]} {national[3:6]}-{national[6:8]}-{national[8:]}"
    assert normalise_msisdn(spaced) == e164
    assert normalise_msisdn("7" + national) == e164
    assert normalise_msisdn(e164) == e164
    assert from_smpp_address(to_smpp_address(e164), 1) == e164


def _reading(read: Callable[[str, str], str], raw: str, region: str) -> str:
    try:
        return read(raw, region)
    except InvalidMsisdn as exc:
        return f"rejected: {exc}"


def _spaced_out(digits: str, separators: list[str]) -> str:
    gaps = [*separators, *[""] * len(digits)]
    return "".join(digit + gap for digit, gap in zip(digits, gaps, strict=False))


# Every ten-digit national number, with more of them in the Russian ranges (3, 4, 8, 9).
national_numbers = st.one_of(
    st.integers(1_000_000_000, 9_999_999_999).map(str),
    st.builds(lambda first, rest: f"{first}{rest:09d}", st.sampled_from("3489"), st.integers(0, 999_999_999)),
)

# Russian numbers as people write them: +7, 7 or 8, then the national number spaced out with
# what people put between digits, perhaps with blanks around.
usual_writings = st.builds(
    lambda lead, prefix, digits, separators, tail: lead + prefix + _spaced_out(digits, separators) + tail,
    st.sampled_from(["", "", "", " ", "\t"]),
    st.sampled_from(["+7", "7", "8", "+7 ", "8 (", "7-", "8(", "+7("]),
    national_numbers,
    st.lists(st.sampled_from(["", "", "", "", " ", "-", "(", ")", ") ", "  ", " - "]), max_size=10),
    st.sampled_from(["", "", "", " ", "\n", "\t"]),
)

# Near misses of those: other prefixes, wrong lengths, other punctuation and characters.
near_misses = st.builds(
    lambda lead, prefix, digits, separators, tail: lead + prefix + _spaced_out(digits, separators) + tail,
    st.sampled_from(["", " ", "\u00a0", "(", "\u3000"]),
    st.sampled_from(["+7", "7", "8", "", "+8", "87", "+77", "07", "+ 7", "＋7", "+70", "80", "00"]),
    st.text(alphabet="0123456789", min_size=8, max_size=12),
    st.lists(st.sampled_from(["", "", " ", "-", "(", ")", ".", "/", "x", "\u2011", "\n"]), max_size=12),
    st.sampled_from(["", " ", "\n", "1", ")", "-", " x1", " ext. 5", "#"]),
)


@settings(max_examples=3000)
@given(usual_writings)
def test_the_fast_path_reads_usual_russian_writings_as_phonenumbers_does(raw: str) -> None:
    assert _reading(normalise_msisdn, raw, "RU") == _reading(_normalise_in_full, raw, "RU")


@settings(max_examples=3000)
@given(near_misses, st.sampled_from(["RU", "RU", "RU", "KZ", "DE"]))
def test_numbers_the_fast_path_does_not_take_read_as_before(raw: str, region: str) -> None:
    assert _reading(normalise_msisdn, raw, region) == _reading(_normalise_in_full, raw, region)


@settings(max_examples=2000)
@given(national_numbers, st.sampled_from(["+7", "7", "8", "+7 ", "8 "]), st.sampled_from([" ", "", "-"]))
def test_the_fast_path_agrees_on_ten_digit_national_numbers(national: str, prefix: str, gap: str) -> None:
    spaced = f"{prefix}({national[:3]}) {national[3:6]}{gap}{national[6:8]}{gap}{national[8:]}"
    for raw in (prefix + national, spaced):
        assert _reading(normalise_msisdn, raw, "RU") == _reading(_normalise_in_full, raw, "RU")
