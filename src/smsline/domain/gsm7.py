"""The GSM 03.38 default alphabet and its extension table.

SMPP carries GSM-7 text with data_coding 0 *unpacked*: one octet per septet. A character
of the extension table takes two septets, the escape 0x1B followed by its code.
"""

from __future__ import annotations

import codecs
from typing import Final

ESCAPE: Final = 0x1B

# Position i is the character of septet i. 0x1B is the escape to the extension table
# and has no character of its own; a receiver that cannot interpret an escape shows a space.
_BASIC_ALPHABET: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

EXTENSION_TABLE: Final[dict[str, int]] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

BASIC_CHARACTERS: Final[frozenset[str]] = frozenset(
    char for code, char in enumerate(_BASIC_ALPHABET) if code != ESCAPE
)
EXTENSION_CHARACTERS: Final[frozenset[str]] = frozenset(EXTENSION_TABLE)
GSM7_CHARACTERS: Final[frozenset[str]] = BASIC_CHARACTERS | EXTENSION_CHARACTERS

# Octets 0x80-0xFF decode as their low seven bits; the escape position decodes as a space.
_DECODING_TABLE: Final = (_BASIC_ALPHABET.replace("\x1b", " ")) * 2
_ENCODING_MAP: Final[dict[int, int | bytes]] = {
    ord(char): code for code, char in enumerate(_BASIC_ALPHABET) if code != ESCAPE
}
_ENCODING_MAP.update({ord(char): bytes((ESCAPE, code)) for char, code in EXTENSION_TABLE.items()})
_EXTENSION_DECODING: Final[dict[int, str]] = {code: char for char, code in EXTENSION_TABLE.items()}
_MASK_TO_SEPTETS: Final = bytes(octet & 0x7F for octet in range(256))


def is_gsm7(text: str) -> bool:
    """Whether every character is in the GSM 03.38 default alphabet or its extension."""
    return GSM7_CHARACTERS.issuperset(text)


def _not_gsm7_error(char: str, position: int) -> ValueError:
    return ValueError(
        f"character {char!r} (U+{ord(char):04X}) at position {position} is not in the GSM 03.38 alphabet"
    )


def _first_non_gsm7(text: str) -> ValueError:
    position, char = next(
        (position, char) for position, char in enumerate(text) if char not in GSM7_CHARACTERS
    )
    return _not_gsm7_error(char, position)


def gsm7_length(text: str) -> int:
    """Number of septets the text takes; extension characters count two."""
    if not GSM7_CHARACTERS.issuperset(text):
        raise _first_non_gsm7(text)
    return len(text) + sum(text.count(char) for char in EXTENSION_TABLE)


def encode_gsm7(text: str) -> bytes:
    """Encode to unpacked septets (one octet each), extension characters as 0x1B + code."""
    try:
        return codecs.charmap_encode(text, "strict", _ENCODING_MAP)[0]
    except UnicodeEncodeError as error:
        raise _not_gsm7_error(text[error.start], error.start) from None


def decode_gsm7(data: bytes) -> str:
    """Decode unpacked septets to text.

    Tolerant of what real SMSCs send: octets of 0x80 and above are read as their low seven
    bits, an escape followed by a code the extension table does not define reads as the
    basic character of that code, and a lone escape at the very end is dropped.
    """
    if b"\x1b" not in data and b"\x9b" not in data:
        return codecs.charmap_decode(data, "strict", _DECODING_TABLE)[0]
    septets = data.translate(_MASK_TO_SEPTETS)
    pieces: list[str] = []
    start = 0
    end = len(septets)
    while True:
        escape_at = septets.find(ESCAPE, start)
        if escape_at < 0:
            pieces.append(codecs.charmap_decode(septets[start:], "strict", _DECODING_TABLE)[0])
            break
        pieces.append(codecs.charmap_decode(septets[start:escape_at], "strict", _DECODING_TABLE)[0])
        if escape_at + 1 >= end:
            break
        code = septets[escape_at + 1]
        pieces.append(_EXTENSION_DECODING.get(code) or _DECODING_TABLE[code])
        start = escape_at + 2
    return "".join(pieces)
