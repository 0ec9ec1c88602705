"""Quiet hours: the window of local time in which a recipient may be texted.

A window is two minutes of the day, ``start`` (opens) and ``end`` (closes), in the recipient's
own time zone. ``start < end`` is a window within one day (09:00–22:00); ``start > end`` wraps
midnight (22:00–06:00); ``start == end`` means always open. Times are judged with zoneinfo, so a
day with a DST change has its real length: the window opens at the first instant whose local
wall-clock time is inside it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_START: Final = 9 * 60
DEFAULT_END: Final = 22 * 60
DEFAULT_ZONE: Final = "Europe/Moscow"
MINUTES_PER_DAY: Final = 24 * 60

_HHMM: Final = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")


def parse_hhmm(text: str) -> int:
    """``"09:00"`` → 540; ``"24:00"`` is the end of the day. Raises ValueError."""
    match = _HHMM.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > MINUTES_PER_DAY:
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    return minutes


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The time zone of that name; an unknown name is the default zone (Moscow)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def is_known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Window:
    start: int = DEFAULT_START  # minutes after local midnight
    end: int = DEFAULT_END

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if not 0 <= value <= MINUTES_PER_DAY:
                raise ValueError(f"{value} is not a minute of the day")

    @property
    def always_open(self) -> bool:
        return self.start % MINUTES_PER_DAY == self.end % MINUTES_PER_DAY

    def contains_minute(self, minute: int) -> bool:
        """Whether a local minute of the day (0..1439) is inside the window."""
        start, end = self.start % MINUTES_PER_DAY, self.end % MINUTES_PER_DAY
        if self.always_open:
            return True
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end

    def __str__(self) -> str:
        return f"{format_hhmm(self.start)}–{format_hhmm(self.end)}"


def _local_minute(local: dt.datetime) -> int:
    return local.hour * 60 + local.minute


def is_open(window: Window, zone_name: str, at: dt.datetime) -> bool:
    """Whether the window is open at the UTC instant ``at`` in the zone ``zone_name``."""
    if window.always_open:
        return True
    local = at.astimezone(zone(zone_name))
    return window.contains_minute(_local_minute(local))


def next_opening(window: Window, zone_name: str, at: dt.datetime) -> dt.datetime:
    """The first instant at or after ``at`` (UTC) at which the window is open, in UTC.

    Found on whole local minutes: the window opens at the first minute boundary whose local
    wall-clock time is inside it (a time skipped by a DST change opens it at the next minute
    that exists)."""
    if is_open(window, zone_name, at):
        return at
    tz = zone(zone_name)
    # Walk forward from the next whole minute; the candidates are the local opening time on
    # each of the next days, or (when that time does not exist that day) the minutes after it.
    start = at.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    local = start.astimezone(tz)
    opening = dt.time(window.start // 60 % 24, window.start % 60)
    for day in range(0, 3):
        date = local.date() + dt.timedelta(days=day)
        candidate = dt.datetime.combine(date, opening, tzinfo=tz)
        instant = candidate.astimezone(dt.UTC)
        # A non-existent local time (spring forward) maps to an instant whose local time is
        # later: the window is open then anyway; a time that exists twice maps to the first.
        if instant < start:
            continue
        if is_open(window, zone_name, instant):
            # A skipped local time lands after the gap: the window may have opened earlier.
            for _ in range(240):
                earlier = instant - dt.timedelta(minutes=1)
                if earlier < start or not is_open(window, zone_name, earlier):
                    break
                instant = earlier
            return instant
    # Should not happen; fall back to a minute-by-minute walk over two days.
    probe = start
    for _ in range(2 * MINUTES_PER_DAY + 120):
        if is_open(window, zone_name, probe):
            return probe
        probe += dt.timedelta(minutes=1)
    raise AssertionError("a window that is not always closed opens within two days")
