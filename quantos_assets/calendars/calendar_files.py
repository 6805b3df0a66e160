"""Custom trading calendars: one YAML file each under the profile's calendars directory.

Markets without an exchange-calendars code (SIFMA's bond-market recommendations, a vendor's
delivery calendar) are written down as data: a code, a time zone, the regular session, the
weekdays, holidays and early closes, and the dates the list is known for. Read with the spec
loader (`load_document`), so every problem is one `FILE:LINE: field: message` line, and
checked across fields and files here (an early close on a holiday, a code defined twice or
already an exchange-calendars code).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quantos_assets.spec.errors import SpecError, SpecProblem
from quantos_assets.spec.loader import Positions, load_document
from quantos_assets.spec.source_map import format_path
from quantos_assets.spec.yaml_reader import SpecYamlLoader

Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CODE_PATTERN = r"^[A-Z][A-Z0-9_]{1,31}$"  # fits the job store's `calendar` column (32)


class CalendarYamlLoader(SpecYamlLoader):
    """Every plain scalar is text (only `~`/empty is null): dates, times and names are parsed
    by the model, so `2026-02-30` is an error on the field that holds it, and `14:00` is not
    YAML 1.1's base-60 integer 840."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's class-level table, replaced whole
        first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in SpecYamlLoader.yaml_implicit_resolvers.items()
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Holiday(_Strict):
    """A weekday with no session."""

    date: dt.date
    name: str = Field(min_length=1)


class EarlyClose(_Strict):
    """A session that closes before the regular close."""

    date: dt.date
    close: dt.time
    name: str = Field(min_length=1)


class CalendarFile(_Strict):
    """One calendar file, as written."""

    code: str = Field(pattern=CODE_PATTERN)
    description: str | None = None
    timezone: str
    open: dt.time
    close: dt.time
    weekdays: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri")
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    holidays: tuple[Holiday, ...] = ()
    early_closes: tuple[EarlyClose, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. America/New_York)"
            ) from None
        return value

    @field_validator("weekdays")
    @classmethod
    def _some_weekdays(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if not value:
            raise ValueError("give at least one weekday with sessions")
        if len(set(value)) != len(value):
            raise ValueError("a weekday is listed twice")
        return value


@dataclass(frozen=True)
class CalendarDefinition:
    """A checked calendar file: what an ExchangeCalendar is built from."""

    code: str
    source: str
    timezone: str
    open: dt.time
    close: dt.time
    weekmask: str  # exchange-calendars' form: "1111100" is Monday to Friday
    first_date: dt.date | None
    last_date: dt.date | None
    holidays: tuple[tuple[dt.date, str], ...]
    early_closes: tuple[tuple[dt.date, dt.time, str], ...]


class CalendarFileError(ValueError):
    """Calendar files that cannot be used; `str()` is one `FILE:LINE: field: message` line
    per problem."""


def _cross_field_problems(doc: CalendarFile) -> list[tuple[tuple[int | str, ...], str]]:
    """What each field allows alone but the file as a whole does not."""
    problems: list[tuple[tuple[int | str, ...], str]] = []
    if doc.close <= doc.open:
        problems.append((("close",), f"close {doc.close:%H:%M} is not after open {doc.open:%H:%M}"))
    if doc.first_date and doc.last_date and doc.last_date < doc.first_date:
        problems.append((("last_date",), "last_date is before first_date"))
    open_days = {WEEKDAYS.index(d) for d in doc.weekdays}

    def check_day(loc: tuple[int | str, ...], day: dt.date) -> None:
        if day.weekday() not in open_days:
            problems.append((loc, f"{day.isoformat()} is a {day:%A}: not a session day anyway"))
        if (doc.first_date and day < doc.first_date) or (doc.last_date and day > doc.last_date):
            problems.append((loc, f"{day.isoformat()} is outside first_date..last_date"))

    holidays: dict[dt.date, int] = {}
    for i, holiday in enumerate(doc.holidays):
        loc: tuple[int | str, ...] = ("holidays", i, "date")
        if holiday.date in holidays:
            first = holidays[holiday.date]
            problems.append(
                (loc, f"{holiday.date.isoformat()} is listed twice (holidays[{first}])")
            )
        holidays.setdefault(holiday.date, i)
        check_day(loc, holiday.date)
    closes: dict[dt.date, int] = {}
    for i, early in enumerate(doc.early_closes):
        loc = ("early_closes", i, "date")
        if early.date in holidays:
            index = holidays[early.date]
            why = (
                f"{early.date.isoformat()} is also a holiday (holidays[{index}], "
                f"{doc.holidays[index].name}): a day either has no session or closes early"
            )
            problems.append((loc, why))
        if early.date in closes:
            first = closes[early.date]
            problems.append(
                (loc, f"{early.date.isoformat()} is listed twice (early_closes[{first}])")
            )
        closes.setdefault(early.date, i)
        check_day(loc, early.date)
        if not doc.open < early.close < doc.close:
            bounds = f"open {doc.open:%H:%M} and close {doc.close:%H:%M}"
            problems.append(
                (("early_closes", i, "close"), f"{early.close:%H:%M} is not between {bounds}")
            )
    return problems


def _definition(doc: CalendarFile, source: str) -> CalendarDefinition:
    open_days = {WEEKDAYS.index(d) for d in doc.weekdays}
    return CalendarDefinition(
        code=doc.code,
        source=source,
        timezone=doc.timezone,
        open=doc.open,
        close=doc.close,
        weekmask="".join("1" if i in open_days else "0" for i in range(7)),
        first_date=doc.first_date,
        last_date=doc.last_date,
        holidays=tuple((h.date, h.name) for h in doc.holidays),
        early_closes=tuple((e.date, e.close, e.name) for e in doc.early_closes),
    )


def calendar_files(directory: Path) -> list[Path]:
    """The calendar files of a directory, in name order (none if it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_calendar_files(
    paths: Sequence[Path], taken: Collection[str]
) -> dict[str, CalendarDefinition]:
    """Every calendar of `paths` by code; CalendarFileError listing every problem of every file.

    `taken`: the exchange-calendars codes and aliases, which a custom code may not shadow
    (a spec naming XNYS must always mean the exchange)."""
    found: dict[str, CalendarDefinition] = {}
    code_lines: dict[str, int] = {}
    lines: list[str] = []
    for path in paths:
        source = str(path)
        try:
            doc, positions = load_document(path, CalendarFile, reader=CalendarYamlLoader)
        except SpecError as err:
            lines.extend(err.lines)
            continue
        problems = _cross_field_problems(doc)
        line = positions.line(("code",))
        if doc.code in taken:
            problems.append(
                (("code",), f"{doc.code!r} is an exchange-calendars code or alias: choose another")
            )
        elif doc.code in found:
            first = found[doc.code]
            problems.append(
                (
                    ("code",),
                    f"{doc.code!r} is already defined in {first.source}:{code_lines[doc.code]}",
                )
            )
        lines.extend(_lines(source, positions, problems))
        if not problems:
            found[doc.code] = _definition(doc, source)
            code_lines[doc.code] = line
    if lines:
        raise CalendarFileError("\n".join(lines))
    return found


def _lines(
    source: str, positions: Positions, problems: list[tuple[tuple[int | str, ...], str]]
) -> list[str]:
    return [
        str(SpecProblem(source, positions.line(loc), format_path(loc), message))
        for loc, message in problems
    ]
