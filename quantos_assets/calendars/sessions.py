"""Exchange sessions from exchange-calendars, built once per process.

Building an XNYS calendar costs ~0.2 s, and a schedule tick or a partition
sync must not pay it each time: calendars are cached per code. They span from
1990 (or the calendar's own earliest bound) to a year ahead, so `start` dates
in specs stay valid however old the code location gets.

This is the one place a code is resolved: an exchange-calendars code or alias, else a
custom calendar of the profile's calendars directory (calendar_files.py), built as an
ExchangeCalendar subclass (custom_exchange.py) and bounded by its file's dates.
"""

from __future__ import annotations

import difflib
import warnings
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from quantos_assets.calendars.calendar_files import (
    CalendarDefinition,
    CalendarFileError,
    calendar_files,
    load_calendar_files,
)
from quantos_assets.calendars.custom_exchange import calendar_class
from resources.profile import calendars_setting

if TYPE_CHECKING:
    import pandas as pd
    from exchange_calendars import ExchangeCalendar

    from quantos_assets.spec.market_time import MarketTime

EARLIEST = date(1990, 1, 1)
ONE_DAY = timedelta(days=1)


def _xc() -> ModuleType:
    with warnings.catch_warnings():
        # exchange-calendars 4.13 warns about pandas 3 deprecations on import.
        warnings.simplefilter("ignore")
        import exchange_calendars

    return exchange_calendars


@lru_cache(maxsize=1)
def exchange_codes() -> frozenset[str]:
    """Every exchange-calendars code and alias (a custom calendar may not reuse one)."""
    return frozenset(_xc().get_calendar_names(include_aliases=True))


def custom_calendars() -> dict[str, CalendarDefinition]:
    """The custom calendars of the profile's directory (CalendarFileError if any file is bad);
    each directory is read once per process."""
    directory, named = calendars_setting()
    return _custom_in(str(directory), named)


@lru_cache(maxsize=4)
def _custom_in(directory: str, named: bool) -> dict[str, CalendarDefinition]:
    if named and not Path(directory).is_dir():
        raise CalendarFileError(f"QUANTOS_CALENDARS_DIR: {directory} is not a directory")
    return load_calendar_files(calendar_files(Path(directory)), exchange_codes())


def calendar_codes() -> tuple[str, ...]:
    """Every code a spec may name: exchange-calendars' codes and aliases, and the custom
    calendars' (none while a calendar file is bad)."""
    try:
        custom = set(custom_calendars())
    except CalendarFileError:
        custom = set()
    return tuple(sorted(exchange_codes() | custom))


def unknown_calendar_message(code: object) -> str | None:
    """None if the code is known; otherwise the spec error text with close matches.

    An exchange code never depends on the custom files; any other code does, so a bad
    calendar file is reported where a code it might define is named."""
    if isinstance(code, str) and code in exchange_codes():
        return None
    try:
        custom = custom_calendars()
    except CalendarFileError as err:
        first = str(err).splitlines()[0]
        return f"unknown exchange calendar {code!r}; the custom calendars cannot be read: {first}"
    if isinstance(code, str) and code in custom:
        return None
    codes = calendar_codes()
    close = difflib.get_close_matches(str(code).upper(), codes, n=4, cutoff=0.4)
    hint = f" (close matches: {', '.join(close)})" if close else " (e.g. XNYS, XLON, XTKS, XHKG)"
    return f"unknown exchange calendar {code!r}{hint}"


@cache
def exchange_calendar(code: str) -> ExchangeCalendar:
    """The calendar for `code`, built once per process."""
    xc = _xc()
    if code not in exchange_codes():
        definition = custom_calendars().get(code)
        if definition is not None:
            return _custom_calendar(definition, xc)
    factory = xc.calendar_utils.global_calendar_dispatcher._calendar_factories.get(
        xc.resolve_alias(code)
    )
    bound = factory.bound_min() if factory is not None else None
    start = max(EARLIEST, bound.date()) if bound is not None else EARLIEST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xc.get_calendar(code, start=start.isoformat())


def _custom_calendar(definition: CalendarDefinition, xc: ModuleType) -> ExchangeCalendar:
    """From 1990 or the file's first date, to the file's last date (its list is known that
    far) or, without one, a year ahead like an exchange's."""
    cls = calendar_class(definition, xc.ExchangeCalendar)
    start = max(EARLIEST, definition.first_date or EARLIEST)
    end = definition.last_date or cls.default_end().date()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calendar: ExchangeCalendar = cls(start=start.isoformat(), end=end.isoformat())
    return calendar


def first_session(code: str) -> date:
    return exchange_calendar(code).first_session.date()


def exchange_timezone(code: str) -> str:
    return str(exchange_calendar(code).tz)


def sessions_between(code: str, start: date, end: date) -> list[date]:
    """Sessions with start <= date <= end, clipped to the calendar's range."""
    cal = exchange_calendar(code)
    lo = max(start, cal.first_session.date())
    hi = min(end, cal.last_session.date())
    if lo > hi:
        return []
    return [ts.date() for ts in cal.sessions_in_range(lo.isoformat(), hi.isoformat())]


def is_session(code: str, day: date) -> bool:
    cal = exchange_calendar(code)
    if not cal.first_session.date() <= day <= cal.last_session.date():
        return False
    return bool(cal.is_session(day.isoformat()))


def previous_session(code: str, day: date) -> date:
    """The last session strictly before `day`, whether `day` is a session or not."""
    cal = exchange_calendar(code)
    return cal.date_to_session((day - ONE_DAY).isoformat(), direction="previous").date()


def fire_time(code: str, session: date, at: MarketTime, tz: str | None = None) -> datetime:
    """When `at` falls for one session, in `tz` (default: the exchange's).

    Open/close come from the calendar per session, so early closes (13:00 on the
    day after Thanksgiving) and DST follow; wall-clock times are that time of day
    on the session's date in `tz`.
    """
    zone = ZoneInfo(tz or exchange_timezone(code))
    if at.anchor == "wall":
        assert at.wall is not None
        return datetime.combine(session, at.wall, tzinfo=zone)
    cal = exchange_calendar(code)
    anchor = (
        cal.session_open(session.isoformat())
        if at.anchor == "open"
        else cal.session_close(session.isoformat())
    )
    return (anchor.to_pydatetime() + at.offset).astimezone(zone)


def fire_times(
    code: str, at: MarketTime, tz: str | None, sessions: pd.DatetimeIndex | None = None
) -> pd.Series:
    """Fire instants (UTC) of every session of the calendar, vectorized, indexed by session.

    Schedules map a tick back to its session with this; one pass over ~9,000
    sessions instead of one calendar lookup per tick.
    """
    import pandas as pd

    cal = exchange_calendar(code)
    index = cal.sessions if sessions is None else sessions
    if at.anchor == "wall":
        assert at.wall is not None
        zone = tz or exchange_timezone(code)
        local = pd.DatetimeIndex(
            index.tz_localize(None) if index.tz is not None else index
        ) + pd.Timedelta(hours=at.wall.hour, minutes=at.wall.minute)
        values = local.tz_localize(zone, nonexistent="shift_forward", ambiguous=False).tz_convert(
            "UTC"
        )
        return pd.Series(values, index=index)
    anchors = (cal.opens if at.anchor == "open" else cal.closes).reindex(index)
    return anchors + pd.Timedelta(at.offset)


def today_in(tz: str, now: datetime | None = None) -> date:
    """The calendar date at `now` (default: the real clock) in `tz`."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(ZoneInfo(tz)).date()
