-- 20261130000000_hot_timing_updates.sql
-- The worker writes each decision's final timings (the commit it waited for)
-- right after that commit. Half of each page is kept free so that update can
-- be HOT: a new row version on the same page and no new entries in the five
-- indexes of decisions, instead of a second full write of every decision.
alter table decisions set (fillfactor = 50);

insert into schema_migrations (version, name) values ('20261130000000', 'hot_timing_updates')
  on conflict (version) do nothing;
