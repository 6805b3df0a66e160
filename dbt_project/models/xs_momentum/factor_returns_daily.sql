-- Daily returns of three rank-weighted long/short factor portfolios over the
-- liquid universe. Each day a factor's weights are its cross-sectional ranks,
-- demeaned over the day's universe (dollar-neutral) and scaled to a gross
-- exposure of 1; the portfolio earns the next day's log return.
with universe as (
    select
        date,
        symbol,
        fwd_return_1d,
        mom_rank - avg(mom_rank) over (partition by date) as mom_w,
        rev_rank - avg(rev_rank) over (partition by date) as rev_w,
        vol_rank - avg(vol_rank) over (partition by date) as vol_w
    from {{ source('xs_momentum_v1', 'universe') }}
    where fwd_return_1d is not null
)

select
    date,
    count(*) as symbols,
    sum(mom_w * fwd_return_1d) / nullif(sum(abs(mom_w)), 0) as momentum_return,
    sum(rev_w * fwd_return_1d) / nullif(sum(abs(rev_w)), 0) as reversal_return,
    sum(vol_w * fwd_return_1d) / nullif(sum(abs(vol_w)), 0) as volatility_return
from universe
group by date
