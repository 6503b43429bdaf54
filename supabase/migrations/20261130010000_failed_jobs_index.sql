-- 20261130010000_failed_jobs_index.sql
-- /health and /metrics count the failed jobs. Without an index that count
-- read every job ever queued (almost all of them done), on every health
-- check; failed jobs are few, so a partial index makes it a short scan.
create index pipeline_jobs_failed on pipeline_jobs (id) where status = 'failed';

insert into schema_migrations (version, name) values ('20261130010000', 'failed_jobs_index')
  on conflict (version) do nothing;
