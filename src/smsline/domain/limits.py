"""Abuse limits on the requests one phone number may send."""

from __future__ import annotations

from dataclasses import dataclass, fields

from smsline.domain.commands import Command


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How many requests one MSISDN may send before it gets no more replies."""

    info_per_hour: int = 3
    info_per_day: int = 10
    any_per_day: int = 20

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value < 1:
                raise ValueError(f"{field.name} must be at least 1, got {value}")


@dataclass(frozen=True, slots=True)
class RecentRequests:
    """Requests already received from the MSISDN, not counting the new one."""

    info_last_hour: int
    info_last_day: int
    any_last_day: int


def limit_exceeded(command: Command, recent: RecentRequests, limits: RequestLimits) -> str | None:
    """Why the new request is over a limit, or None when it may be answered."""
    if command is Command.INFO:
        if recent.info_last_hour >= limits.info_per_hour:
            return f"more than {limits.info_per_hour} CLIENT info an hour"
        if recent.info_last_day >= limits.info_per_day:
            return f"more than {limits.info_per_day} CLIENT info a day"
    if recent.any_last_day >= limits.any_per_day:
        return f"more than {limits.any_per_day} requests a day"
    return None
