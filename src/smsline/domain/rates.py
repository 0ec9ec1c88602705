"""Rate limits of the HTTP API: a token bucket per API token, a sliding window per portal login.

Both are pure: the caller passes the current (monotonic) time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` requests per second on average, up to ``burst`` at once."""

    rate: float
    burst: int
    tokens: float = field(default=math.nan)
    updated: float = 0.0

    def take(self, now: float) -> float:
        """0.0 when a request may go now, else the seconds until it may."""
        if math.isnan(self.tokens):
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class SlidingWindow:
    """At most ``limit`` attempts within any ``seconds``."""

    limit: int
    seconds: float
    times: deque[float] = field(default_factory=deque)

    def take(self, now: float) -> float:
        """0.0 when an attempt may go now (and counts it), else the seconds until one may."""
        while self.times and self.times[0] <= now - self.seconds:
            self.times.popleft()
        if len(self.times) >= self.limit:
            return self.times[0] + self.seconds - now
        self.times.append(now)
        return 0.0

    def idle(self, now: float) -> bool:
        return not self.times or self.times[-1] <= now - self.seconds
