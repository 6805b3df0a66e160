-- The backtest's daily PnL next to the momentum factor it trades: the active
-- return is what the quintile long/short (after costs) earned beyond the
-- rank-weighted factor.
select
    b.date,
    b.gross_return,
    b.cost,
    b.net_return,
    b.turnover,
    b.equity,
    f.momentum_return as momentum_factor_return,
    b.net_return - f.momentum_return as active_return
from {{ source('xs_momentum_v1', 'backtest_returns') }} as b
left join {{ ref('factor_returns_daily') }} as f
    on f.date = b.date
