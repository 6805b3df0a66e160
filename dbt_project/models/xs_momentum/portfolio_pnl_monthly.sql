-- Monthly PnL rollup of the backtest. Daily returns are log returns, so a
-- month's return is their sum; `net_return_pct` compounds it back.
select
    cast(date_trunc('month', date) as date) as month,
    count(*) as trading_days,
    sum(gross_return) as gross_return,
    sum(cost) as cost,
    sum(net_return) as net_return,
    exp(sum(net_return)) - 1 as net_return_pct,
    avg(turnover) as avg_turnover,
    max_by(equity, date) as equity_end,
    sum(active_return) as active_return
from {{ ref('portfolio_pnl_daily') }}
group by 1
