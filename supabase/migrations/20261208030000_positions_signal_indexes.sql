-- 20261208030000_positions_signal_indexes.sql
-- GET /signals/:id lists the positions its signal opened or closed
-- (entry_signal_id or exit_signal_id), which no index held: every look read
-- the whole positions table, a few ms at 50,000 positions and growing with
-- every one ever opened. Positions are written once per entry and once per
-- close, far less often than signals; building these holds position writes
-- (so decisions, not webhooks) for the build.
create index if not exists positions_entry_signal on positions (entry_signal_id);
create index if not exists positions_exit_signal on positions (exit_signal_id)
  where exit_signal_id is not null;

insert into schema_migrations (version, name) values ('20261208030000', 'positions_signal_indexes')
  on conflict (version) do nothing;
