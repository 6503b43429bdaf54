-- 20261208000000_events_txid_index.sql
-- /events reads live events in (txid, id) order through events_txid_id. A
-- database that applied 20261207000000_events_order (a deploy of, or a
-- rollback to, a release from ae62c6b to 2d9c93a: the service migrates at
-- start-up too) lost that index: the file dropped it, and its withdrawal
-- (360c743) put nothing back, so every /events read and every stream's start
-- read and sorted the whole table (60-170 ms a read at 300,000 events, against
-- under 1 ms). Built again where it is missing; elsewhere nothing is done and
-- no lock is taken. Where it is built, new events (so webhooks) wait for the
-- build: 0.13 s for 200,000 events here. The withdrawn file's column `txn`
-- and its index events_txn_id stay: the releases that read them may still be
-- rolled back to.
do $$
begin
  if to_regclass('events_txid_id') is null then
    create index events_txid_id on events (txid, id);
  end if;
end $$;

insert into schema_migrations (version, name) values ('20261208000000', 'events_txid_index')
  on conflict (version) do nothing;
