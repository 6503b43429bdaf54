-- 20261208010000_jobs_autovacuum.sql
-- pipeline_jobs is a queue that keeps its rows: each job's row is written
-- three times (queued, claimed, done), and every claim reads the partial
-- indexes pipeline_jobs_ready and pipeline_jobs_active, whose entries for
-- finished jobs stay until a vacuum. Autovacuum's default waits for a fifth
-- of the table to be dead: 600,000 rows at 3 M jobs, when a claim took 7-9 ms
-- against 0.25 ms just after a VACUUM. Vacuumed after 1 % (plus 1,000 rows)
-- instead. A setting only: it takes a lock that reads and writes do not wait
-- for, and the embedded database (no autovacuum) ignores it; its own
-- maintenance vacuums this table (db/maintenance.ts).
alter table pipeline_jobs set (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);

insert into schema_migrations (version, name) values ('20261208010000', 'jobs_autovacuum')
  on conflict (version) do nothing;
