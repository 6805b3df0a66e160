"""Trading-calendar time: exchange sessions, market-relative fire times, gates.

Quant data arrives on exchange sessions, not cron days; Dagster's time-window
partitions cannot skip exchange holidays, so this package is where sessions,
early closes and DST are computed (on top of exchange-calendars).
"""
