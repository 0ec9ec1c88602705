"""Choice of encoding, splitting of long texts into concatenated parts, and decoding.

An SMS carries 140 octets: 160 GSM-7 septets or 70 UCS-2 units. A text that does not fit
is split into parts; each part gives up the room of its user data header (UDH).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from smsline.domain.gsm7 import EXTENSION_CHARACTERS, decode_gsm7, encode_gsm7, is_gsm7

Encoding = Literal["gsm7", "ucs2"]

DATA_CODING: Final[dict[Encoding, int]] = {"gsm7": 0, "ucs2": 8}

USER_DATA_OCTETS: Final = 140
SINGLE_GSM7_SEPTETS: Final = 160
SINGLE_UCS2_UNITS: Final = 70

IE_CONCAT_8BIT: Final = 0x00
IE_CONCAT_16BIT: Final = 0x08

_EXTENSION_PATTERN: Final = re.compile("[" + re.escape("".join(sorted(EXTENSION_CHARACTERS))) + "]")
_ASTRAL_PATTERN: Final = re.compile("[\U00010000-\U0010ffff]")
_SURROGATE_PATTERN: Final = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Segmentation:
    """A text ready to be submitted as one or more SMS."""

    encoding: Encoding
    data_coding: int
    parts: tuple[bytes, ...]
    """Encoded payload of each part, without any UDH."""
    texts: tuple[str, ...]
    """The text each part carries; joined they give the original text."""

    @property
    def count(self) -> int:
        return len(self.parts)


def choose_encoding(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM 03.38 alphabet or its extension, else UCS-2."""
    return "gsm7" if is_gsm7(text) else "ucs2"


def _part_capacity(encoding: Encoding, header_octets: int) -> int:
    if not 0 <= header_octets < USER_DATA_OCTETS - 4:
        raise ValueError(f"header_octets must be between 0 and 135, got {header_octets}")
    room = USER_DATA_OCTETS - header_octets
    return room * 8 // 7 if encoding == "gsm7" else room // 2


def _double_width_count(text: str, encoding: Encoding) -> int:
    """Characters that take two units: GSM-7 extension characters or non-BMP characters."""
    pattern = _EXTENSION_PATTERN if encoding == "gsm7" else _ASTRAL_PATTERN
    return len(pattern.findall(text))


def _reject_lone_surrogates(text: str) -> None:
    lone = _SURROGATE_PATTERN.search(text)
    if lone is not None:
        raise ValueError(
            f"text contains a lone UTF-16 surrogate U+{ord(lone.group()):04X} "
            f"at position {lone.start()}; it cannot be sent"
        )


def _cut_points(text: str, capacity: int, encoding: Encoding, doubles: int) -> list[int]:
    """End index of each part, filling each part greedily up to its capacity.

    A character that takes two units (a GSM-7 escape sequence, a surrogate pair) is never
    cut: it moves whole to the next part.
    """
    length = len(text)
    if doubles == 0:
        return [*range(capacity, length, capacity), length]
    cuts: list[int] = []
    used = 0
    for index, char in enumerate(text):
        if encoding == "gsm7":
            width = 2 if char in EXTENSION_CHARACTERS else 1
        else:
            width = 2 if char > "\uffff" else 1
        if used + width > capacity:
            cuts.append(index)
            used = 0
        used += width
    cuts.append(length)
    return cuts


def _encode(text: str, encoding: Encoding) -> bytes:
    return encode_gsm7(text) if encoding == "gsm7" else text.encode("utf-16-be")


def segment(text: str, header_octets: int = 6) -> Segmentation:
    """Encode a text and split it into the parts to submit.

    header_octets is the size of the UDH each part of a multipart message carries:
    6 for the 8-bit-reference concatenation header, 7 for the 16-bit one, 0 when the SMSC
    concatenates by SAR TLVs.
    """
    encoding = choose_encoding(text)
    if encoding == "ucs2":
        _reject_lone_surrogates(text)
    capacity = _part_capacity(encoding, header_octets)
    single = SINGLE_GSM7_SEPTETS if encoding == "gsm7" else SINGLE_UCS2_UNITS
    doubles = _double_width_count(text, encoding)
    if len(text) + doubles <= single:
        texts: tuple[str, ...] = (text,)
    else:
        start = 0
        pieces: list[str] = []
        for end in _cut_points(text, capacity, encoding, doubles):
            pieces.append(text[start:end])
            start = end
        texts = tuple(pieces)
    return Segmentation(
        encoding=encoding,
        data_coding=DATA_CODING[encoding],
        parts=tuple(_encode(piece, encoding) for piece in texts),
        texts=texts,
    )


def count_segments(text: str, header_octets: int = 6) -> int:
    """How many SMS the text takes, without encoding it."""
    encoding = choose_encoding(text)
    if encoding == "ucs2":
        _reject_lone_surrogates(text)
    capacity = _part_capacity(encoding, header_octets)
    single = SINGLE_GSM7_SEPTETS if encoding == "gsm7" else SINGLE_UCS2_UNITS
    doubles = _double_width_count(text, encoding)
    units = len(text) + doubles
    if units <= single:
        return 1
    if doubles == 0:
        return -(-units // capacity)
    return len(_cut_points(text, capacity, encoding, doubles))


def concat_udh(reference: int, total: int, seq: int, *, sixteen_bit: bool = False) -> bytes:
    """The concatenation UDH: ``05 00 03 ref total seq`` or ``06 08 04 refhi reflo total seq``."""
    if not 1 <= total <= 255:
        raise ValueError(f"total parts must be between 1 and 255, got {total}")
    if not 1 <= seq <= total:
        raise ValueError(f"part number must be between 1 and {total}, got {seq}")
    if sixteen_bit:
        if not 0 <= reference <= 0xFFFF:
            raise ValueError(f"16-bit reference must be between 0 and 65535, got {reference}")
        return bytes((0x06, IE_CONCAT_16BIT, 0x04, reference >> 8, reference & 0xFF, total, seq))
    if not 0 <= reference <= 0xFF:
        raise ValueError(f"8-bit reference must be between 0 and 255, got {reference}")
    return bytes((0x05, IE_CONCAT_8BIT, 0x03, reference, total, seq))


@dataclass(frozen=True, slots=True)
class Concat:
    """Where a part belongs in a concatenated message."""

    reference: int
    total: int
    seq: int


def split_udh(short_message: bytes) -> tuple[Concat | None, bytes]:
    """Parse the UDH at the start of a message whose esm_class has UDHI set.

    Returns the concatenation information, if the header has any, and the payload after
    the header. A concatenation element whose part number is 0 or beyond the total is
    ignored, as GSM 03.40 prescribes.
    """
    if not short_message:
        raise ValueError("malformed UDH: the message is empty")
    header_length = short_message[0]
    header_end = 1 + header_length
    if header_end > len(short_message):
        raise ValueError(
            f"malformed UDH: header length {header_length} runs past the end of "
            f"the {len(short_message)}-octet message"
        )
    concat: Concat | None = None
    position = 1
    while position < header_end:
        if position + 2 > header_end:
            raise ValueError(f"malformed UDH: truncated information element at octet {position}")
        element_id = short_message[position]
        element_length = short_message[position + 1]
        data_start = position + 2
        data_end = data_start + element_length
        if data_end > header_end:
            raise ValueError(
                f"malformed UDH: information element 0x{element_id:02X} of length "
                f"{element_length} runs past the end of the header"
            )
        data = short_message[data_start:data_end]
        if element_id == IE_CONCAT_8BIT:
            if element_length != 3:
                raise ValueError(f"malformed UDH: concatenation element with length {element_length}, not 3")
            concat = _valid_concat(data[0], data[1], data[2])
        elif element_id == IE_CONCAT_16BIT:
            if element_length != 4:
                raise ValueError(
                    f"malformed UDH: 16-bit concatenation element with length {element_length}, not 4"
                )
            concat = _valid_concat((data[0] << 8) | data[1], data[2], data[3])
        position = data_end
    return concat, short_message[header_end:]


def _valid_concat(reference: int, total: int, seq: int) -> Concat | None:
    if total == 0 or seq == 0 or seq > total:
        return None
    return Concat(reference=reference, total=total, seq=seq)


# SMPP 3.4 data_coding values that name a character set of their own.
_CODEC_OF_DATA_CODING: Final[dict[int, str]] = {
    1: "ascii",
    3: "latin-1",
    5: "shift_jis",
    6: "iso8859_5",
    7: "iso8859_8",
    10: "iso2022_jp",
    13: "euc_jp",
    14: "euc_kr",
}


def _decode_ucs2(payload: bytes) -> str:
    even = payload[: len(payload) - len(payload) % 2]
    return even.decode("utf-16-be", errors="replace")


def decode_payload(data_coding: int, payload: bytes) -> str:
    """Decode an inbound payload by its data_coding; never raises.

    0 is GSM-7 unpacked, 1 IA5 (ASCII), 3 Latin-1, 6 Cyrillic (ISO 8859-5), 8 UCS-2 read
    as UTF-16-BE; the GSM message-waiting and message-class groups (0xC0-0xFF) are read by
    the alphabet they name. 8-bit binary and anything unknown is shown as Latin-1.
    """
    if data_coding == 0:
        return decode_gsm7(payload)
    if data_coding == 8:
        return _decode_ucs2(payload)
    codec = _CODEC_OF_DATA_CODING.get(data_coding)
    if codec is not None:
        return payload.decode(codec, errors="replace")
    if 0xC0 <= data_coding <= 0xDF:
        return decode_gsm7(payload)
    if 0xE0 <= data_coding <= 0xEF:
        return _decode_ucs2(payload)
    if 0xF0 <= data_coding <= 0xFF and not data_coding & 0x04:
        return decode_gsm7(payload)
    return payload.decode("latin-1")
