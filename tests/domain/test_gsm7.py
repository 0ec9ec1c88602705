from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.gsm7 import (
    EXTENSION_CHARACTERS,
    GSM7_CHARACTERS,
    decode_gsm7,
    encode_gsm7,
    gsm7_length,
    is_gsm7,
)

gsm_texts = st.text(alphabet=st.sampled_from(sorted(GSM7_CHARACTERS)), max_size=300)


def test_alphabet_has_127_basic_and_10_extension_characters() -> None:
    assert len(GSM7_CHARACTERS) == 137
    assert set("\f^{}\\[~]|€") == EXTENSION_CHARACTERS


@pytest.mark.parametrize(
    "text",
    ["", "Hello, world!", "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "Price: 5€ [net] {x}|~^\\"],
)
def test_gsm_texts_are_recognised(text: str) -> None:
    assert is_gsm7(text)


@pytest.mark.parametrize("text", ["привет", "`", "ç", "smile 😀", "Ä\x1b", "tab\t"])
def test_other_texts_are_not_gsm(text: str) -> None:
    assert not is_gsm7(text)


def test_length_counts_extension_characters_twice() -> None:
    assert gsm7_length("abc") == 3
    assert gsm7_length("5€") == 3
    assert gsm7_length("{[]}") == 8
    assert gsm7_length("") == 0


def test_length_of_non_gsm_text_is_an_error_naming_the_character() -> None:
    with pytest.raises(ValueError, match="'ж'"):
        gsm7_length("abcж")


def test_encoding_uses_gsm_code_points_not_ascii() -> None:
    assert encode_gsm7("@£$") == b"\x00\x01\x02"
    assert encode_gsm7("¤") == b"\x24"
    assert encode_gsm7("_") == b"\x11"
    assert encode_gsm7("Aa0 \n") == b"Aa0 \n"
    assert encode_gsm7("à") == b"\x7f"


def test_extension_characters_encode_as_escape_and_code() -> None:
    assert encode_gsm7("€") == b"\x1b\x65"
    assert encode_gsm7("a{b}") == b"a\x1b\x28b\x1b\x29"
    assert encode_gsm7("\f^\\[~]|") == b"\x1b\x0a\x1b\x14\x1b\x2f\x1b\x3c\x1b\x3d\x1b\x3e\x1b\x40"


def test_encoding_non_gsm_text_names_the_first_offending_character() -> None:
    with pytest.raises(ValueError, match=r"'я' \(U\+044F\) at position 3"):
        encode_gsm7("abcяж")


def test_escape_character_itself_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="U\\+001B"):
        encode_gsm7("\x1b")


def test_decoding_known_septets() -> None:
    assert decode_gsm7(b"\x00\x01\x02Hi") == "@£$Hi"
    assert decode_gsm7(b"\x1b\x65 5") == "€ 5"


def test_unknown_escape_reads_as_the_basic_character() -> None:
    assert decode_gsm7(b"\x1bA") == "A"
    assert decode_gsm7(b"x\x1b\x00y") == "x@y"


def test_trailing_lone_escape_is_dropped() -> None:
    assert decode_gsm7(b"abc\x1b") == "abc"
    assert decode_gsm7(b"\x1b") == ""


def test_high_octets_are_read_as_their_low_seven_bits() -> None:
    assert decode_gsm7(b"\xc1\xe2") == "Ab"
    assert decode_gsm7(b"\x9b\x65") == "€"


def test_escape_followed_by_escape_shows_a_space() -> None:
    assert decode_gsm7(b"a\x1b\x1bb") == "a b"


@settings(max_examples=200)
@given(gsm_texts)
def test_encoding_round_trips_and_has_one_octet_per_septet(text: str) -> None:
    encoded = encode_gsm7(text)
    assert len(encoded) == gsm7_length(text)
    assert all(octet < 0x80 for octet in encoded)
    assert decode_gsm7(encoded) == text


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_decoding_accepts_any_octets(data: bytes) -> None:
    text = decode_gsm7(data)
    assert is_gsm7(text)
    assert len(text) <= len(data)
