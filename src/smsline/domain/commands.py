"""Inbound commands: reading what a customer texted to the service number."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Command(StrEnum):
    INFO = "info"
    SMS_STOP = "sms_stop"
    SMS_START = "sms_start"


@dataclass(frozen=True, slots=True)
class Match:
    """The command a text is, or why it is none."""

    command: Command | None
    reason: str | None


# Letters of other scripts that look like Latin letters, mapped to their Latin twins.
# A Cyrillic or Greek capital that is a twin of a Latin capital stands for that Latin
# letter in either case, since matching is case-insensitive; a few lowercase letters
# are twins only in lowercase.
_CYRILLIC_TWINS: Final = {
    "А": "A", "а": "a",
    "В": "B", "в": "b",
    "Е": "E", "е": "e",
    "К": "K", "к": "k",
    "М": "M", "м": "m",
    "Н": "H", "н": "h",
    "О": "O", "о": "o",
    "Р": "P", "р": "p",
    "С": "C", "с": "c",
    "Т": "T", "т": "t",
    "У": "Y", "у": "y",
    "Х": "X", "х": "x",
    "Ѕ": "S", "ѕ": "s",
    "І": "I", "і": "i",
    "Ј": "J", "ј": "j",
    "Ԛ": "Q", "ԛ": "q",
    "Ԝ": "W", "ԝ": "w",
    "Ү": "Y", "ү": "y",
    "Һ": "H", "һ": "h",
    "Ӏ": "I",
    "ԁ": "d",
}  # fmt: skip
_GREEK_TWINS: Final = {
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    "ο": "o", "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "υ": "u",
}  # fmt: skip
_LATIN_VARIANTS: Final = {"İ": "I", "ı": "i"}

_TO_LATIN: Final[dict[int, str]] = {
    ord(char): latin
    for table in (_CYRILLIC_TWINS, _GREEK_TWINS, _LATIN_VARIANTS)
    for char, latin in table.items()
}

_KEYWORD: Final = "client"
_COMMANDS: Final[dict[tuple[str, ...], Command]] = {
    ("info",): Command.INFO,
    ("sms", "stop"): Command.SMS_STOP,
    ("sms", "start"): Command.SMS_START,
}


def _drop_invisible(text: str) -> str:
    """Remove format characters (zero-width spaces and joiners, soft hyphens, BOM)."""
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


def normalise_text(text: str) -> str:
    """The form a text is matched in.

    NFKC, look-alike letters of other scripts read as Latin, case folded, runs of any
    white space collapsed to one space, stripped.
    """
    folded = unicodedata.normalize("NFKC", text).translate(_TO_LATIN).casefold()
    if not folded.isascii():
        folded = _drop_invisible(folded)
    return " ".join(folded.split())


def match_command(text: str) -> Match:
    """Which command the text is; only the exact commands count."""
    normalised = normalise_text(text)
    if not normalised:
        return Match(None, "empty message")
    words = tuple(normalised.split(" "))
    if words[0] != _KEYWORD:
        return Match(None, "not a command: does not start with CLIENT")
    rest = words[1:]
    command = _COMMANDS.get(rest)
    if command is not None:
        return Match(command, None)
    if not rest:
        return Match(None, "incomplete CLIENT command: nothing after CLIENT")
    if rest[0] == "info":
        return Match(None, "unexpected words after CLIENT info")
    if rest[0] == "sms":
        if len(rest) == 1:
            return Match(None, "incomplete CLIENT command: sms without stop or start")
        if rest[1] in ("stop", "start"):
            return Match(None, f"unexpected words after CLIENT sms {rest[1]}")
        return Match(None, "unknown CLIENT sms command")
    return Match(None, "unknown CLIENT command")
