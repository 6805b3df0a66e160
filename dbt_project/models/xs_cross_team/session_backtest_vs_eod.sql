-- The momentum backtest's day (xs_momentum_v1.backtest_returns, research) next to the
-- end-of-day rollup of the same NYSE session (xs_daily_eod.eod_summary, whose owner may
-- be another team): one row per session both have. Partitioned by xs_daily_eod's
-- sessions in Dagster (the partitioned source's; the backtest is unpartitioned), so a
-- run computes its session range and replaces exactly those rows.
{{ config(
    materialized='incremental',
    unique_key='partition_key',
    incremental_strategy='delete+insert',
) }}

select
    s.partition_key,
    b.date,
    s.symbols as eod_symbols,
    s.avg_close as eod_avg_close,
    b.net_return,
    b.equity
from {{ source('xs_daily_eod', 'eod_summary') }} as s
inner join {{ source('xs_momentum_v1', 'backtest_returns') }} as b
    on b.date = cast(s.partition_key as date)
where {{ session_filter('s.partition_key') }}
