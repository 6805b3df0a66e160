-- Each symbol's close against its session's average close (from the SQL rollup
-- eod_summary). Partitioned by session in Dagster: a run computes the sessions
-- of its partition (range) and replaces exactly those rows.
{{ config(
    materialized='incremental',
    unique_key='partition_key',
    incremental_strategy='delete+insert',
) }}

select
    b.partition_key,
    b.partition_key || '/' || b.symbol as bar_id,
    b.symbol,
    b.close,
    s.avg_close,
    b.close / s.avg_close - 1 as premium
from {{ source('xs_daily_eod', 'bars') }} as b
inner join {{ source('xs_daily_eod', 'eod_summary') }} as s
    on s.partition_key = b.partition_key
where {{ session_filter('b.partition_key') }}
