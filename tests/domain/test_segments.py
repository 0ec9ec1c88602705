from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.gsm7 import EXTENSION_CHARACTERS, GSM7_CHARACTERS, decode_gsm7, gsm7_length
from smsline.domain.segments import (
    DATA_CODING,
    Concat,
    choose_encoding,
    concat_udh,
    count_segments,
    decode_payload,
    segment,
    split_udh,
)

GSM_CAPACITY = {0: 160, 6: 153, 7: 152}
UCS2_CAPACITY = {0: 70, 6: 67, 7: 66}

unicode_characters = st.characters(exclude_categories=["Cs"])
gsm_texts = st.text(alphabet=st.sampled_from(sorted(GSM7_CHARACTERS)), max_size=700)
# Mostly GSM characters with a sprinkle of extension characters, Cyrillic and emoji, so
# that the boundaries where an escape or a surrogate pair would be cut are often hit.
mixed_texts = st.text(
    alphabet=st.one_of(
        st.sampled_from("abc €{}[]"),
        st.sampled_from("жя😀👍🏽🇷🇺"),
        unicode_characters,
    ),
    max_size=500,
)
any_texts = st.one_of(gsm_texts, mixed_texts)
header_sizes = st.sampled_from([0, 6, 7])


def ucs2_units(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


# Encoding choice


def test_gsm_text_is_sent_as_gsm7() -> None:
    assert choose_encoding("Hello {world} €5") == "gsm7"
    assert segment("Hello").data_coding == 0


def test_any_character_outside_gsm_makes_the_text_ucs2() -> None:
    assert choose_encoding("Hello, Иван") == "ucs2"
    assert choose_encoding("ok 😀") == "ucs2"
    assert segment("ç").data_coding == 8
    assert DATA_CODING == {"gsm7": 0, "ucs2": 8}


# Single-part boundaries


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("€" * 80, 1),
        ("€" * 80 + "a", 2),
        ("я" * 70, 1),
        ("я" * 71, 2),
        ("😀" * 35, 1),
        ("😀" * 35 + "я", 2),
        ("", 1),
    ],
)
def test_text_fits_one_sms_up_to_160_septets_or_70_units(text: str, parts: int) -> None:
    assert segment(text).count == parts
    assert count_segments(text) == parts


@pytest.mark.parametrize(
    ("header_octets", "fits_two", "needs_three"),
    [(6, 306, 307), (7, 304, 305), (0, 320, 321)],
)
def test_gsm_part_capacity_depends_on_header(header_octets: int, fits_two: int, needs_three: int) -> None:
    assert count_segments("x" * fits_two, header_octets) == 2
    assert count_segments("x" * needs_three, header_octets) == 3
    parts = segment("x" * fits_two, header_octets).parts
    assert [len(part) for part in parts] == [fits_two // 2, fits_two // 2]


@pytest.mark.parametrize(
    ("header_octets", "fits_two", "needs_three"),
    [(6, 134, 135), (7, 132, 133), (0, 140, 141)],
)
def test_ucs2_part_capacity_depends_on_header(header_octets: int, fits_two: int, needs_three: int) -> None:
    assert count_segments("ж" * fits_two, header_octets) == 2
    assert count_segments("ж" * needs_three, header_octets) == 3


def test_empty_text_is_one_empty_part() -> None:
    result = segment("")
    assert result.parts == (b"",)
    assert result.texts == ("",)
    assert result.encoding == "gsm7"


def test_extension_character_at_the_cut_moves_whole_to_the_next_part() -> None:
    text = "a" * 152 + "€" + "b" * 10
    result = segment(text)
    assert result.texts == ("a" * 152, "€" + "b" * 10)
    assert result.parts[1].startswith(b"\x1b\x65")


def test_emoji_at_the_cut_moves_whole_to_the_next_part() -> None:
    text = "я" * 66 + "😀" + "я" * 10
    result = segment(text)
    assert result.texts == ("я" * 66, "😀" + "я" * 10)
    assert result.parts[1].decode("utf-16-be") == "😀" + "я" * 10


def test_ucs2_parts_are_utf16_so_emoji_survive() -> None:
    result = segment("Привет 😀")
    assert result.parts == ("Привет 😀".encode("utf-16-be"),)


def test_lone_surrogate_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        segment("bad \ud800 text")
    with pytest.raises(ValueError, match="surrogate"):
        count_segments("bad \udc00")


def test_impossible_header_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="header_octets"):
        segment("x" * 400, header_octets=140)


# Properties


def part_size(part_text: str, encoding: str) -> int:
    return gsm7_length(part_text) if encoding == "gsm7" else ucs2_units(part_text)


@settings(max_examples=150)
@given(any_texts, header_sizes)
def test_parts_join_to_the_text_and_fit_their_capacity(text: str, header_octets: int) -> None:
    result = segment(text, header_octets)
    assert "".join(result.texts) == text
    assert len(result.texts) == len(result.parts) == result.count
    if result.count > 1:
        capacity = (GSM_CAPACITY if result.encoding == "gsm7" else UCS2_CAPACITY)[header_octets]
        for part_text, part in zip(result.texts, result.parts, strict=True):
            assert part_text
            assert part_size(part_text, result.encoding) <= capacity
            octets = len(part) if result.encoding == "gsm7" else len(part) // 2
            assert octets <= capacity


@settings(max_examples=150)
@given(any_texts, header_sizes)
def test_every_part_but_the_last_is_filled(text: str, header_octets: int) -> None:
    result = segment(text, header_octets)
    capacity = (GSM_CAPACITY if result.encoding == "gsm7" else UCS2_CAPACITY)[header_octets]
    for current, following in zip(result.texts, result.texts[1:], strict=False):
        next_char = following[0]
        assert part_size(current + next_char, result.encoding) > capacity


@settings(max_examples=150)
@given(st.text(alphabet=st.sampled_from("ab€{"), min_size=150, max_size=700), header_sizes)
def test_gsm_escape_is_never_split(text: str, header_octets: int) -> None:
    result = segment(text, header_octets)
    for part_text, part in zip(result.texts, result.parts, strict=True):
        assert not part.endswith(b"\x1b")
        assert part.count(b"\x1b") == sum(part_text.count(c) for c in EXTENSION_CHARACTERS)
        assert decode_gsm7(part) == part_text


@settings(max_examples=150)
@given(st.text(alphabet=st.sampled_from("жя😀🇷"), min_size=60, max_size=400), header_sizes)
def test_surrogate_pair_is_never_split(text: str, header_octets: int) -> None:
    result = segment(text, header_octets)
    for part_text, part in zip(result.texts, result.parts, strict=True):
        assert part.decode("utf-16-be", errors="strict") == part_text


@settings(max_examples=150)
@given(gsm_texts)
def test_gsm_text_is_one_sms_exactly_when_it_has_at_most_160_septets(text: str) -> None:
    assert (segment(text).count == 1) == (gsm7_length(text) <= 160)


@settings(max_examples=150)
@given(st.text(alphabet=st.sampled_from("жя😀ab"), max_size=150))
def test_ucs2_text_is_one_sms_exactly_when_it_has_at_most_70_units(text: str) -> None:
    result = segment(text)
    if result.encoding == "ucs2":
        assert (result.count == 1) == (ucs2_units(text) <= 70)


@settings(max_examples=150)
@given(any_texts, header_sizes)
def test_segment_count_is_known_before_sending(text: str, header_octets: int) -> None:
    assert count_segments(text, header_octets) == segment(text, header_octets).count


@settings(max_examples=150)
@given(any_texts, header_sizes)
def test_joined_parts_decode_back_to_the_text(text: str, header_octets: int) -> None:
    result = segment(text, header_octets)
    assert decode_payload(DATA_CODING[result.encoding], b"".join(result.parts)) == text


# Concatenation header


def test_eight_bit_reference_header() -> None:
    assert concat_udh(0x42, 3, 1) == bytes.fromhex("050003420301")


def test_sixteen_bit_reference_header() -> None:
    assert concat_udh(0x1234, 2, 2, sixteen_bit=True) == bytes.fromhex("06080412340202")


@pytest.mark.parametrize(
    ("reference", "total", "seq", "sixteen_bit"),
    [(256, 2, 1, False), (-1, 2, 1, False), (70000, 2, 1, True), (1, 0, 0, False),
     (1, 2, 3, False), (1, 2, 0, False), (1, 256, 1, False)],
)  # fmt: skip
def test_out_of_range_header_values_are_rejected(
    reference: int, total: int, seq: int, sixteen_bit: bool
) -> None:
    with pytest.raises(ValueError, match="must be between"):
        concat_udh(reference, total, seq, sixteen_bit=sixteen_bit)


@settings(max_examples=100)
@given(
    st.integers(0, 0xFFFF),
    st.integers(1, 255).flatmap(lambda total: st.tuples(st.just(total), st.integers(1, total))),
    st.booleans(),
    st.binary(max_size=140),
)
def test_header_built_is_read_back(
    reference: int, total_seq: tuple[int, int], sixteen_bit: bool, payload: bytes
) -> None:
    total, seq = total_seq
    if not sixteen_bit:
        reference &= 0xFF
    message = concat_udh(reference, total, seq, sixteen_bit=sixteen_bit) + payload
    assert split_udh(message) == (Concat(reference, total, seq), payload)


def test_other_information_elements_are_skipped() -> None:
    # national language shift (0x25) then 8-bit concatenation
    message = bytes.fromhex("082501010003070302") + b"payload"
    assert split_udh(message) == (Concat(7, 3, 2), b"payload")


def test_header_without_concatenation() -> None:
    assert split_udh(bytes.fromhex("03250101") + b"hi") == (None, b"hi")
    assert split_udh(b"\x00hi") == (None, b"hi")


def test_concatenation_with_impossible_part_number_is_ignored() -> None:
    assert split_udh(bytes.fromhex("050003070300") + b"x") == (None, b"x")
    assert split_udh(bytes.fromhex("050003070204") + b"x") == (None, b"x")


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"", "empty"),
        (bytes.fromhex("0A0003"), "runs past the end of the 3-octet message"),
        (bytes.fromhex("0500050701"), "runs past the end"),
        (bytes.fromhex("0400030701") + b"x", "runs past the end of the header"),
        (bytes.fromhex("01") + b"\x00", "truncated information element"),
        (bytes.fromhex("0400020102"), "length 2, not 3"),
    ],
)
def test_malformed_header_is_reported(message: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=f"malformed UDH.*{problem}"):
        split_udh(message)


# Decoding inbound payloads


@pytest.mark.parametrize(
    ("data_coding", "payload", "text"),
    [
        (0, b"\x00Hello \x1b\x65", "@Hello €"),
        (1, b"plain \xff", "plain \ufffd"),
        (3, "café".encode("latin-1"), "café"),
        (8, "Привет 😀".encode("utf-16-be"), "Привет 😀"),
        (8, "Да".encode("utf-16-be") + b"\x04", "Да"),
        (8, b"\xd8\x00\x00A", "\ufffdA"),
        (2, b"\xe9t\xe9", "été"),
        (4, b"\x01\xff", "\x01ÿ"),
        (6, "Иван".encode("iso8859_5"), "Иван"),
        (0xF0, b"Hi\x00", "Hi@"),
        (0xF4, b"\xe9", "é"),
        (0x19, b"\xe9", "é"),
    ],
)
def test_inbound_payload_is_decoded_by_data_coding(data_coding: int, payload: bytes, text: str) -> None:
    assert decode_payload(data_coding, payload) == text


@settings(max_examples=300)
@given(st.integers(0, 255), st.binary(max_size=200))
def test_decoding_a_payload_never_raises(data_coding: int, payload: bytes) -> None:
    assert isinstance(decode_payload(data_coding, payload), str)
