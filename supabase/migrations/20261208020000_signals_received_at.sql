-- 20261208020000_signals_received_at.sql
-- GET /signals?since=&until= filters on received_at, which no index held:
-- the list walked seq from the newest row and kept reading until it had a
-- page. A `since` later than the newest signal (any quiet evening) read the
-- whole table: 0.7-1.2 s at 3 M signals (a year at 10 a minute). Signals are
-- append-only and stored in receipt order, so a BRIN index (a min and max per
-- 128 pages) finds a time window in a few page ranges: 0.2 ms for that query,
-- 12 ms for the last 11 hours. It costs a webhook next to nothing (0.4 us a
-- row against 0.8 us for a b-tree), and its newest ranges are summarized by
-- the worker's maintenance (db/maintenance.ts), not left to autovacuum.
-- Building it holds new signals (so webhooks) for its build: 0.5 s at 3 M
-- signals here.
create index if not exists signals_received_at on signals using brin (received_at);

insert into schema_migrations (version, name) values ('20261208020000', 'signals_received_at')
  on conflict (version) do nothing;
