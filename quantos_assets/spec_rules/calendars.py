"""The calendars a spec may name: exchange-calendars' codes (quantos_assets/calendars/)."""

from __future__ import annotations

from datetime import date

from quantos_assets.calendars.sessions import first_session, unknown_calendar_message


class ExchangeCalendars:
    """spec/outside_rules.Calendars over exchange-calendars."""

    def unknown_calendar_message(self, code: object) -> str | None:
        return unknown_calendar_message(code)

    def first_session(self, code: str) -> date:
        return first_session(code)


EXCHANGE_CALENDARS = ExchangeCalendars()
