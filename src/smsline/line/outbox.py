"""The outbox: rows for SMS to send, their priorities, and the in-memory form the dispatcher uses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from smsline.domain.segments import choose_encoding, count_segments

# How long a row written already claimed for a worker ("sending") stays that worker's before
# another may take it; the dispatcher renews the lease of the rows it holds.
CLAIM_SECONDS = 60.0


class Priority(IntEnum):
    """Lower goes first: replies to requests, then notifications, then mass texting."""

    ACK = 0
    REPLY = 1
    NOTIFICATION = 5
    CAMPAIGN = 9


class Kind:
    ACK = "ack"
    RESULT = "result"
    CREDENTIALS = "credentials"  # text is stored masked; the clear text is made at send time
    DIRECT = "direct"
    NOTIFICATION = "notification"  # queued through the notifications API
    CAMPAIGN = "campaign"  # mass texting: one recipient of a campaign
    CAMPAIGN_TEST = "campaign_test"  # a campaign's text sent to one phone to try it


def outbox_row(
    *,
    kind: str,
    priority: Priority,
    sender: str,
    destination: str,
    text: str,
    language: str,
    now: dt.datetime,
    customer: int | None = None,
    request: int | None = None,
    status: str = "queued",
    claimed_by: str | None = None,
    claimed_until: dt.datetime | None = None,
    campaign: int | None = None,
) -> dict[str, Any]:
    """The values of a new outbox row; encoding and segment count come from the text."""
    return {
        "kind": kind,
        "priority": int(priority),
        "status": status,
        "customer": customer,
        "request": request,
        "sender": sender,
        "destination": destination,
        "language": language,
        "text": text,
        "encoding": choose_encoding(text),
        "segments": count_segments(text),
        "attempts": 0,
        "queued_at": now,
        "sending_at": now if status == "sending" else None,
        "claimed_by": claimed_by,
        "claimed_until": claimed_until,
        "campaign": campaign,
    }


@dataclass(order=True, slots=True)
class OutboxItem:
    """A claimed outbox row on its way to the SMSC, ordered by priority then age."""

    priority: int
    id: int
    kind: str = field(compare=False)
    sender: str = field(compare=False)
    destination: str = field(compare=False)
    text: str = field(compare=False)
    language: str = field(compare=False)
    customer: int | None = field(compare=False, default=None)
    request: int | None = field(compare=False, default=None)
    attempts: int = field(compare=False, default=0)
    queued_at: dt.datetime | None = field(compare=False, default=None)
    received_mono: float | None = field(compare=False, default=None)  # for ack latency
    campaign: int | None = field(compare=False, default=None)
    # The text to submit when it differs from the stored one (a credential SMS, in memory only).
    clear_text: str | None = field(compare=False, default=None, repr=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutboxItem:
        return cls(
            priority=row["priority"],
            id=row["id"],
            kind=row["kind"],
            sender=row["sender"],
            destination=row["destination"],
            text=row["text"],
            language=row["language"],
            customer=row["customer"],
            request=row["request"],
            attempts=row["attempts"],
            queued_at=row.get("queued_at"),
            received_mono=row.get("received_mono"),
            campaign=row.get("campaign"),
        )
