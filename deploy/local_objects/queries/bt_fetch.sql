-- s3://queries/bt_fetch.sql: daily bars for the seed's BiLSTM backtest (bt_xs_bilstm_v1.fetch_data).
--
-- LOCAL STAND-IN. In production this object is the firm's query over its market-data tables.
-- On the embedded default there are none, and a SQL node sees nothing but its input views
-- (fetch_data has no ins), so this query makes its own synthetic market: 40 symbols over
-- the 520 business days from 2022-01-03 to 2023-12-29 (20,800 rows), deterministic, in the
-- same shape and spirit as quantos_assets/tasks/market_data.py: per-symbol drift that
-- persists (a 60-day moving average of shocks: past returns weakly predict future ones),
-- a market factor with per-symbol betas, per-symbol volatility, and liquidity spread over
-- three orders of magnitude.
--
-- Copied into the local artifact store (<store>/buckets/queries/bt_fetch.sql) by the local
-- profile from deploy/local_objects/queries/bt_fetch.sql: edit that file, not the copy.
-- Trino SQL (the node's dialect), run on DuckDB through sqlglot; pseudo-random numbers are
-- the fractional part of a scaled sine of their coordinates (the same in both engines).
WITH
days AS (
    SELECT week * 5 + weekday AS day_index,
           CAST(date_add('day', week * 7 + weekday, DATE '2022-01-03') AS date) AS date
    FROM UNNEST(sequence(0, 103)) AS w(week)
    CROSS JOIN UNNEST(sequence(0, 4)) AS wd(weekday)
),
symbols AS (
    SELECT sym_index,
           concat('S', lpad(CAST(sym_index AS varchar), 3, '0')) AS symbol,
           0.012 + 0.023 * u_vol AS vol,
           0.6 + 0.8 * u_beta AS beta,
           20.0 + 280.0 * u_price AS first_price,
           exp(ln(2e4) + (ln(2e7) - ln(2e4)) * u_volume) AS base_volume
    FROM (
        SELECT s AS sym_index,
               sin(s * 78.233 + 1.618) * 43758.5453 - floor(sin(s * 78.233 + 1.618) * 43758.5453) AS u_vol,
               sin(s * 78.233 + 2.718) * 43758.5453 - floor(sin(s * 78.233 + 2.718) * 43758.5453) AS u_beta,
               sin(s * 78.233 + 3.141) * 43758.5453 - floor(sin(s * 78.233 + 3.141) * 43758.5453) AS u_price,
               sin(s * 78.233 + 4.669) * 43758.5453 - floor(sin(s * 78.233 + 4.669) * 43758.5453) AS u_volume
        FROM UNNEST(sequence(0, 39)) AS t(s)
    ) AS draws
),
market AS (
    -- one market return per day: N(0.0003, 0.01)
    SELECT day_index,
           0.0003 + 0.01 * sqrt(-2.0 * ln(u1)) * cos(2.0 * pi() * u2) AS market_return
    FROM (
        SELECT day_index,
               0.000001 + 0.999998 * (sin(day_index * 12.9898 + 0.5) * 43758.5453
                                      - floor(sin(day_index * 12.9898 + 0.5) * 43758.5453)) AS u1,
               sin(day_index * 12.9898 + 0.25) * 43758.5453
                   - floor(sin(day_index * 12.9898 + 0.25) * 43758.5453) AS u2
        FROM days
    ) AS draws
),
uniforms AS (
    -- four uniforms per (symbol, day), each from its own phase of the sine hash
    SELECT d.day_index, d.date, s.sym_index, s.symbol, s.vol, s.beta, s.first_price, s.base_volume,
           0.000001 + 0.999998 * (sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.11) * 43758.5453
               - floor(sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.11) * 43758.5453)) AS u1,
           sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.37) * 43758.5453
               - floor(sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.37) * 43758.5453) AS u2,
           0.000001 + 0.999998 * (sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.59) * 43758.5453
               - floor(sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.59) * 43758.5453)) AS u3,
           sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.83) * 43758.5453
               - floor(sin(d.day_index * 12.9898 + s.sym_index * 78.233 + 0.83) * 43758.5453) AS u4
    FROM days AS d
    CROSS JOIN symbols AS s
),
shocks AS (
    -- Box-Muller: four independent N(0, 1) per (symbol, day)
    SELECT u.*,
           sqrt(-2.0 * ln(u1)) * cos(2.0 * pi() * u2) AS z_idio,
           sqrt(-2.0 * ln(u1)) * sin(2.0 * pi() * u2) AS z_drift,
           sqrt(-2.0 * ln(u3)) * cos(2.0 * pi() * u4) AS z_gap,
           sqrt(-2.0 * ln(u3)) * sin(2.0 * pi() * u4) AS z_volume
    FROM uniforms AS u
),
drifts AS (
    SELECT s.*, m.market_return,
           0.008 * avg(s.z_drift) OVER (
               PARTITION BY s.sym_index ORDER BY s.day_index ROWS BETWEEN 59 PRECEDING AND CURRENT ROW
           ) AS drift
    FROM shocks AS s
    JOIN market AS m ON m.day_index = s.day_index
),
returns AS (
    SELECT d.*, d.drift + d.beta * d.market_return + d.vol * d.z_idio AS log_return
    FROM drifts AS d
),
prices AS (
    SELECT r.*,
           r.first_price * exp(sum(r.log_return) OVER (
               PARTITION BY r.sym_index ORDER BY r.day_index ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           )) AS close_price
    FROM returns AS r
),
bars AS (
    SELECT p.*,
           p.close_price * exp(-p.log_return) * exp(0.3 * p.vol * p.z_gap) AS open_price
    FROM prices AS p
)
SELECT date,
       symbol,
       round(open_price, 4) AS open,
       round(greatest(open_price, close_price) * exp(0.5 * vol * abs(z_gap - z_volume) / sqrt(2.0)), 4) AS high,
       round(least(open_price, close_price) * exp(-0.5 * vol * abs(z_idio + z_drift) / sqrt(2.0)), 4) AS low,
       round(close_price, 4) AS close,
       CAST(round(base_volume * exp(0.4 * z_volume + 8.0 * abs(log_return))) AS bigint) AS volume
FROM bars
ORDER BY date, symbol
