-- 20261207000000_events_order.sql
-- Live events are ordered by a bigint copy of their transaction id. The
-- embedded database (PGlite, a 32-bit build) sorts xid8 values wrongly
-- (998, 756, 1117, 1000 came out of `order by txid desc` in that order),
-- so once transaction ids passed 1000 /events started clients at the wrong
-- cursor and replayed, repeated and reordered events. bigint sorts right on
-- both databases; xid8 values stay far below 2^63.
-- Adding the column rewrites events under an exclusive lock, which webhooks
-- wait for: events are kept EVENTS_RETENTION_DAYS (7), and 200,000 rows took
-- 0.5 s here (column, index and all), inside the ingest deadline.
alter table events add column txn bigint generated always as ((txid::text)::bigint) stored;
create index events_txn_id on events (txn, id);
drop index events_txid_id;

insert into schema_migrations (version, name) values ('20261207000000', 'events_order')
  on conflict (version) do nothing;
