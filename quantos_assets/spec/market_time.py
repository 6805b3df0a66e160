"""Parse a market-relative time (`close+30m`, `open-15m`, `09:00`).

Specs name times the way desks talk about them: relative to the open or the
close of the session, or a plain wall-clock time. Parsing is separate from the
calendar so the spec model can reject a bad `at` without building a calendar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Literal

Anchor = Literal["open", "close", "wall"]

_RELATIVE = re.compile(r"^(open|close)(?:\s*([+-])\s*(\d{1,4})\s*(m|h))?$")
_RELATIVE_ANCHORS: dict[str, Anchor] = {"open": "open", "close": "close"}  # what _RELATIVE matched
_WALL = re.compile(r"^(\d{1,2}):(\d{2})$")
FORMS = (
    "open|close with an optional +/- offset in m or h (e.g. close+30m, open-1h), or a wall-clock "
    "time HH:MM"
)


@dataclass(frozen=True)
class MarketTime:
    """When in a session something happens: anchor plus offset, or a wall-clock time."""

    anchor: Anchor
    offset: timedelta = timedelta(0)
    wall: time | None = None

    def __str__(self) -> str:
        if self.anchor == "wall":
            assert self.wall is not None
            return self.wall.strftime("%H:%M")
        minutes = int(self.offset.total_seconds() // 60)
        if minutes == 0:
            return self.anchor
        sign = "+" if minutes > 0 else "-"
        minutes = abs(minutes)
        amount = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
        return f"{self.anchor}{sign}{amount}"


def parse_market_time(text: str) -> MarketTime:
    """A MarketTime, or ValueError with the accepted forms (the spec error line)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a market time ({FORMS}), got {text!r}")  # noqa: TRY004 - pydantic reports ValueError
    raw = text.strip().lower()
    match = _RELATIVE.match(raw)
    if match:
        word, sign, amount, unit = match.groups()
        anchor = _RELATIVE_ANCHORS[word]
        if sign is None:
            return MarketTime(anchor)
        minutes = int(amount) * (60 if unit == "h" else 1)
        if minutes > 24 * 60:
            raise ValueError(f"offset in {text!r} is more than a day (at most 24h)")
        return MarketTime(anchor, timedelta(minutes=minutes if sign == "+" else -minutes))
    match = _WALL.match(raw)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour < 24 and minute < 60:
            return MarketTime("wall", wall=time(hour, minute))
        raise ValueError(f"{text!r} is not a valid time of day (00:00 to 23:59)")
    raise ValueError(f"invalid market time {text!r}: expected {FORMS}")
