"""What the API's endpoints work with: the database, the settings, who to tell about new
messages, and the in-memory state of authentication and rate limiting."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from smsline.config import Settings
from smsline.db.engine import BatchWork, Database
from smsline.domain.rates import SlidingWindow, TokenBucket
from smsline.line.outbox import OutboxItem
from smsline.notify.notifications import Answer, NotificationRequest, Refusal, queue_notifications
from smsline.notify.portal import PortalPasswords
from smsline.notify.tokens import TokenInfo

TOKEN_CACHE_SECONDS = 5.0  # a revoked token stops working within this time


@dataclass(slots=True)
class CachedToken:
    info: TokenInfo | None
    until: float


@dataclass
class ApiContext:
    db: Database
    settings: Settings
    on_queued: Callable[[], None] = lambda: None  # new outbox rows: wake the dispatcher
    # With a dispatcher in this process: its worker id, and how it takes the notification SMS
    # written already claimed for it (no claim has to find them).
    worker_id: str | None = None
    hand_over: Callable[[list[OutboxItem]], None] | None = None
    on_campaigns_changed: Callable[[], None] = lambda: None  # wake the campaign runner
    # In an API process of its own: the service process queues notifications (its database
    # thread is the one writer of a SQLite database, and its dispatcher takes the SMS at once).
    queue_elsewhere: Callable[[NotificationRequest], Awaitable[Answer | Refusal]] | None = None
    campaign_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    tokens: dict[str, CachedToken] = field(default_factory=dict)
    buckets: dict[int, TokenBucket] = field(default_factory=dict)
    logins: dict[str, SlidingWindow] = field(default_factory=dict)
    portal: PortalPasswords | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.portal is None:
            self.portal = PortalPasswords(self.db)
        # One callable for the life of the context: the database batches items by their work.
        worker = self.worker_id if self.hand_over is not None else None
        self.queue_notifications: BatchWork[tuple[NotificationRequest, dt.datetime], Answer | Refusal] = (
            partial(queue_notifications, settings=self.settings, worker=worker)
        )

    async def queue_notification(self, request: NotificationRequest) -> Answer | Refusal:
        """Queue one notification (batched with the others waiting). Its SMS goes to the
        dispatcher when the transaction has committed, even if the HTTP request that asked for it
        is cancelled meanwhile: a claimed row nobody holds would wait for the next restart."""
        if self.queue_elsewhere is not None:
            return await self.queue_elsewhere(request)
        future = self.db.submit(self.queue_notifications, (request, dt.datetime.now(dt.UTC)))
        future.add_done_callback(self._hand_over)
        outcome = await asyncio.shield(future)
        if isinstance(outcome, Answer) and outcome.queued and not outcome.replayed and not outcome.claimed:
            self.on_queued()  # queued for any worker: wake the dispatcher to claim it
        return outcome

    def _hand_over(self, future: asyncio.Future[Answer | Refusal]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        outcome = future.result()
        if isinstance(outcome, Answer) and outcome.claimed is not None and self.hand_over is not None:
            self.hand_over([outcome.claimed])

    def passwords(self) -> PortalPasswords:
        assert self.portal is not None
        return self.portal

    def throttle_token(self, token: TokenInfo) -> float:
        """0.0 when the token may make a request now, else the seconds to wait."""
        bucket = self.buckets.get(token.id)
        rate = float(token.rate_limit) if token.rate_limit else self.settings.api_rate_limit
        burst = (
            max(self.settings.api_rate_burst, int(rate)) if token.rate_limit else self.settings.api_rate_burst
        )
        if bucket is None or bucket.rate != rate:
            bucket = self.buckets[token.id] = TokenBucket(rate, burst)
        return bucket.take(self.clock())

    def throttle_login(self, login: str) -> float:
        """0.0 when the portal may try this login now, else the seconds to wait."""
        now = self.clock()
        key = login.strip().lower()
        window = self.logins.get(key)
        if window is None:
            if len(self.logins) > 10_000:
                for stale in [k for k, w in self.logins.items() if w.idle(now)]:
                    del self.logins[stale]
            window = self.logins[key] = SlidingWindow(self.settings.portal_attempts_per_minute, 60.0)
        return window.take(now)

    def close(self) -> None:
        if self.portal is not None:
            self.portal.close()
