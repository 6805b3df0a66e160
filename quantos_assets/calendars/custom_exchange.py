"""An exchange-calendars `ExchangeCalendar` class built from a custom calendar file.

A real subclass, not a look-alike: sessions, opens, closes, early closes and DST then come
from the same library code as XNYS's, so schedules, session partitions, freshness, gates and
the gateway's calendar jobs use a custom code through sessions.py unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from quantos_assets.calendars.calendar_files import CalendarDefinition

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar


def calendar_class(definition: CalendarDefinition, base: type[ExchangeCalendar]) -> type[Any]:
    """A subclass of `base` (exchange-calendars' ExchangeCalendar) for one definition.

    Holidays are ad-hoc holidays and early closes ad-hoc special closes: the file lists
    dates, not rules. Bounds are the file's first/last dates, so a calendar never claims
    sessions for years its list does not cover."""
    import pandas as pd

    by_time: dict[dt.time, list[dt.date]] = defaultdict(list)
    for day, close, _ in definition.early_closes:
        by_time[close].append(day)
    first = pd.Timestamp(definition.first_date) if definition.first_date else None
    last = pd.Timestamp(definition.last_date) if definition.last_date else None
    attributes: dict[str, Any] = {
        "__doc__": f"{definition.code}, from {definition.source}.",
        "name": definition.code,
        "tz": ZoneInfo(definition.timezone),
        "open_times": ((None, definition.open),),
        "close_times": ((None, definition.close),),
        "weekmask": definition.weekmask,
        "adhoc_holidays": [pd.Timestamp(day) for day, _ in definition.holidays],
        "special_closes_adhoc": [
            (close, pd.DatetimeIndex([pd.Timestamp(d) for d in days]))
            for close, days in sorted(by_time.items())
        ],
        "bound_min": classmethod(lambda cls: first),
        "bound_max": classmethod(lambda cls: last),
    }
    return type(f"{definition.code}Calendar", (base,), attributes)
