"""How the SMSC simulator departs from a well-behaved SMSC, on purpose.

One ``Faults`` value says everything: how slowly and how often it refuses ``submit_sm``, when it
drops or hangs the link, and how its delivery receipts come (id base, timing, loss). The
default is an SMSC that answers at once, accepts everything and sends every receipt. Decisions
that affect a fraction of messages draw from a random generator seeded with ``seed``, so a run
with the same submits in the same order misbehaves the same way.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from smsline.smpp.pdus import ESME_RSYSERR

IdFormat = Literal["hex", "dec"]
RECEIPT_FIRST_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Faults:
    response_delay: float = 0.0
    """Seconds before each ``submit_sm_resp`` goes out."""
    throttle_tps: float = 0.0
    """Accept at most this many ``submit_sm`` in any one second; answer the rest
    ``ESME_RTHROTTLED``. 0: no limit."""
    error_fraction: float = 0.0
    """This fraction of ``submit_sm`` (0 to 1) is refused with ``error_status``."""
    error_status: int = ESME_RSYSERR
    drop_link_every: int = 0
    """Close the link right after answering every N-th accepted ``submit_sm`` (counted across
    links), as a network failure would; later PDUs already sent on it are never read. 0: never."""
    hung: bool = False
    """Keep every socket open and accept connections, but read nothing: no bind_resp, no
    submit_sm_resp, no enquire_link_resp, and no deliver_sm goes out."""
    message_id_format: IdFormat = "hex"
    """Base of the message id in ``submit_sm_resp``."""
    receipt_id_format: IdFormat | None = None
    """Base of the id in receipts; None: the same as ``message_id_format``."""
    receipt_tlvs: bool = True
    """Receipts carry ``receipted_message_id`` and ``message_state``; False: only the text."""
    receipt_delay: float = 0.0
    """Seconds from ``submit_sm`` to its receipt."""
    receipt_before_response: bool = False
    """Send the receipt first and the ``submit_sm_resp`` only when the receipt's deliver_sm has
    been answered (or after ``RECEIPT_FIRST_WAIT`` seconds at most)."""
    late_receipt_fraction: float = 0.0
    """This fraction of receipts comes ``late_receipt_delay`` seconds after the others."""
    late_receipt_delay: float = 0.0
    missing_receipt_fraction: float = 0.0
    """This fraction of requested receipts is never sent."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("error_fraction", "late_receipt_fraction", "missing_receipt_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("response_delay", "throttle_tps", "receipt_delay", "late_receipt_delay"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if self.drop_link_every < 0:
            raise ValueError(f"drop_link_every must not be negative, got {self.drop_link_every}")
        if not 0 < self.error_status <= 0xFFFFFFFF:
            raise ValueError(f"error_status must be a non-zero command_status, got {self.error_status}")

    @property
    def receipt_ids(self) -> IdFormat:
        return self.receipt_id_format or self.message_id_format


class FaultState:
    """What the faults need to remember between submits: the random generator, the count of
    accepted submits since the last drop, and the acceptance times of the last second."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.random = random.Random(faults.seed)
        self.accepted_since_drop = 0
        self._accepted_at: deque[float] = deque()

    def throttles(self) -> bool:
        """Whether a submit_sm arriving now goes over ``throttle_tps``."""
        limit = self.faults.throttle_tps
        if limit <= 0:
            return False
        now = time.monotonic()
        window = self._accepted_at
        while window and window[0] <= now - 1.0:
            window.popleft()
        return len(window) >= limit

    def refuses(self) -> bool:
        fraction = self.faults.error_fraction
        return fraction > 0 and self.random.random() < fraction

    def accept(self) -> bool:
        """Count an accepted submit_sm; True when its link is to be dropped after the answer."""
        if self.faults.throttle_tps > 0:
            self._accepted_at.append(time.monotonic())
        every = self.faults.drop_link_every
        if every <= 0:
            return False
        self.accepted_since_drop += 1
        if self.accepted_since_drop < every:
            return False
        self.accepted_since_drop = 0
        return True

    def receipt_delay(self) -> float | None:
        """Seconds until a requested receipt is sent; None when it goes missing."""
        faults = self.faults
        if faults.missing_receipt_fraction > 0 and self.random.random() < faults.missing_receipt_fraction:
            return None
        if faults.late_receipt_fraction > 0 and self.random.random() < faults.late_receipt_fraction:
            return faults.receipt_delay + faults.late_receipt_delay
        return faults.receipt_delay
