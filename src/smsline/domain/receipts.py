"""Delivery receipts: their text, the status they report, and matching their message ids."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

MessageStatus = Literal[
    "queued", "sending", "submitted", "delivered", "undeliverable", "expired", "rejected", "failed"
]

FINAL_STATUSES: Final[frozenset[str]] = frozenset(
    {"delivered", "undeliverable", "expired", "rejected", "failed"}
)


@dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of a receipt's text; the ``text:`` field (message content) is not kept."""

    message_id: str | None
    stat: str | None
    err: str | None
    submit_date: str | None
    done_date: str | None
    dlvrd: str | None
    sub: str | None


_FIELD: Final = re.compile(
    r"(?<![A-Za-z0-9_])"
    r"(submit[ _]+date|done[ _]+date|id|sub|dlvrd|stat|err|text)"
    r"\s*:",
    re.IGNORECASE,
)


# The exact Appendix B layout, which nearly every SMSC sends: read with one match. Values hold
# no colon, so no field can hide inside one and the general reading would find the same.
_STANDARD: Final = re.compile(
    r"id:([^\s:]+) sub:([^\s:]+) dlvrd:([^\s:]+) submit date:([^\s:]+) done date:([^\s:]+)"
    r" stat:([^\s:]+) err:([^\s:]+)(?: text:.*)?",
    re.DOTALL,
)


def parse_receipt_text(text: str) -> ReceiptText:
    """Read a receipt in the SMPP 3.4 Appendix B form.

    ``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E text:...`` — any case, any field missing, extra spaces, and
    ``submit_date``/``done_date`` spelt with an underscore. Everything from ``text:`` on
    is left out.
    """
    standard = _STANDARD.fullmatch(text)
    if standard is not None:
        message_id, sub, dlvrd, submit_date, done_date, stat, err = standard.groups()
        return ReceiptText(message_id, stat.upper(), err, submit_date, done_date, dlvrd, sub)
    return _parse_any_layout(text)


def _parse_any_layout(text: str) -> ReceiptText:
    values: dict[str, str | None] = {}
    found = list(_FIELD.finditer(text))
    for index, field in enumerate(found):
        name = field.group(1).lower()
        if name.startswith(("submit", "done")):
            name = name[: name.index("date") - 1].rstrip(" _") + "_date"
        if name == "text":
            break
        end = found[index + 1].start() if index + 1 < len(found) else len(text)
        words = text[field.end() : end].split()
        if name not in values:
            values[name] = words[0] if words else None
    stat = values.get("stat")
    return ReceiptText(
        message_id=values.get("id"),
        stat=stat.upper() if stat else None,
        err=values.get("err"),
        submit_date=values.get("submit_date"),
        done_date=values.get("done_date"),
        dlvrd=values.get("dlvrd"),
        sub=values.get("sub"),
    )


STAT_TO_STATUS: Final[dict[str, MessageStatus]] = {
    "DELIVRD": "delivered",
    "UNDELIV": "undeliverable",
    "EXPIRED": "expired",
    "REJECTD": "rejected",
    "DELETED": "failed",
    "UNKNOWN": "failed",
    "ACCEPTD": "submitted",
    "ENROUTE": "submitted",
    # Spellings some SMSCs use instead of the seven-letter abbreviations.
    "DELIVERED": "delivered",
    "UNDELIVERABLE": "undeliverable",
    "REJECTED": "rejected",
    "ACCEPTED": "submitted",
}

# Values of the message_state TLV (SMPP 3.4 5.2.28; 0 and 9 added by SMPP 5.0).
MESSAGE_STATE_TO_STATUS: Final[dict[int, MessageStatus]] = {
    0: "submitted",  # SCHEDULED
    1: "submitted",  # ENROUTE
    2: "delivered",  # DELIVERED
    3: "expired",  # EXPIRED
    4: "failed",  # DELETED
    5: "undeliverable",  # UNDELIVERABLE
    6: "submitted",  # ACCEPTED
    7: "failed",  # UNKNOWN
    8: "rejected",  # REJECTED
    9: "failed",  # SKIPPED
}


def status_from_receipt(stat: str | None, message_state: int | None) -> MessageStatus | None:
    """The status a receipt reports; the message_state TLV wins over the text's ``stat:``."""
    if message_state is not None and message_state in MESSAGE_STATE_TO_STATUS:
        return MESSAGE_STATE_TO_STATUS[message_state]
    if stat is not None:
        return STAT_TO_STATUS.get(stat.strip().upper())
    return None


IdBase = Literal["same", "resp_hex_receipt_dec", "resp_dec_receipt_hex"]

_ID_NOISE: Final = re.compile(r"^[\s\x00]+|[\s\x00]+$")
_DECIMAL: Final = re.compile(r"[0-9]+")
_HEXADECIMAL: Final = re.compile(r"[0-9a-f]+")
# Beyond this a hexadecimal id is kept as it is rather than converted to decimal.
_LONGEST_CONVERTED_HEX: Final = 256


def _without_leading_zeros(digits: str) -> str:
    return digits.lstrip("0") or "0"


def canonical_message_id(raw: str, *, side: Literal["resp", "receipt"], base: IdBase) -> str:
    """A key under which the id of a ``submit_sm_resp`` and of its receipt compare equal.

    Many SMSCs give the id in hexadecimal on one side and in decimal on the other; ``base``
    says which. Hexadecimal ids are converted to decimal, numeric ids lose leading zeros,
    anything else is compared as lowercase text.
    """
    cleaned = _ID_NOISE.sub("", raw).lower()
    if base == "same":
        return _without_leading_zeros(cleaned) if _HEXADECIMAL.fullmatch(cleaned) else cleaned
    hex_side = "resp" if base == "resp_hex_receipt_dec" else "receipt"
    if side == hex_side:
        if _HEXADECIMAL.fullmatch(cleaned) and len(cleaned) <= _LONGEST_CONVERTED_HEX:
            return str(int(cleaned, 16))
        return cleaned
    if _DECIMAL.fullmatch(cleaned):
        return _without_leading_zeros(cleaned)
    return cleaned


_FAILED_WORST_FIRST: Final[tuple[MessageStatus, ...]] = (
    "rejected",
    "undeliverable",
    "expired",
    "failed",
)


def merge_part_statuses(statuses: Sequence[MessageStatus]) -> MessageStatus:
    """The status of a multipart message from the statuses of its parts.

    Delivered only when every part is; a part that failed makes the message fail the worst
    way any part did (rejected, undeliverable, expired, failed). Otherwise the message is
    still on its way: queued while no part has left, sending while some have not been
    submitted yet, submitted after that.
    """
    if not statuses:
        raise ValueError("a message has at least one part")
    present = set(statuses)
    if present == {"delivered"}:
        return "delivered"
    for status in _FAILED_WORST_FIRST:
        if status in present:
            return status
    if present == {"queued"}:
        return "queued"
    if "queued" in present or "sending" in present:
        return "sending"
    return "submitted"
