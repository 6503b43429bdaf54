-- 20261122000000_initial_schema.sql
-- The whole first schema: signals (append-only) and their dedup keys, the
-- pipeline job queue, decisions, positions, GEX and context snapshots, and
-- processing errors. Applied by `deno task migrate` (or at start-up) and
-- equally by `psql "$DATABASE_URL" -f` on each file in order: every file
-- records itself in schema_migrations, so both routes give the same result.

create table if not exists schema_migrations (
  version text primary key,
  name text not null,
  checksum text,
  applied_at timestamptz not null default now()
);
comment on table schema_migrations is 'Migrations applied to this database, one row per file in supabase/migrations.';

-- signals -------------------------------------------------------------------

create table signals (
  id uuid primary key,
  -- Receipt order: paging cursor and the order jobs are decided in per symbol.
  seq bigint generated always as identity unique,
  received_at timestamptz not null,
  source text not null,
  symbol text not null,
  exchange text,
  direction text not null check (direction in ('CALL', 'PUT', 'EXIT')),
  action text not null check (action in ('ENTRY', 'EXIT')),
  timeframe text not null,
  signal_time timestamptz not null,
  price numeric check (price > 0),
  metadata jsonb not null default '{}',
  alert_id text,
  dedup_key text not null,
  -- The alert body as received, with its secret/passphrase removed.
  raw_payload jsonb not null,
  auth_method text not null,
  client_ip text,
  correlation_id text not null,
  created_at timestamptz not null default now()
);
comment on table signals is 'Every accepted alert, raw (secret removed) and canonical. Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.';
create index idx_signals_created_at on signals (created_at desc);
create index signals_symbol_seq on signals (symbol, seq desc);
create index signals_dedup_key on signals (dedup_key);

create function signals_refuse_change() returns trigger
language plpgsql as $$
begin
  raise exception 'signals is append-only: % is not allowed', tg_op
    using errcode = 'restrict_violation';
end;
$$;
create trigger signals_append_only
  before update or delete on signals
  for each row execute function signals_refuse_change();
create trigger signals_no_truncate
  before truncate on signals
  for each statement execute function signals_refuse_change();

create table signal_dedup (
  dedup_key text primary key,
  -- Deferred so the key can be claimed before the signal row is written.
  signal_id uuid not null references signals (id) deferrable initially deferred,
  expires_at timestamptz not null
);
comment on table signal_dedup is 'The live dedup window: one row per key, owned by the signal that claimed it until expires_at. The primary key is what makes racing instances store an alert once.';

-- pipeline job queue ------------------------------------------------------

create table pipeline_jobs (
  -- Identity order is receipt order: per symbol, jobs are decided in id order.
  id bigint generated always as identity primary key,
  signal_id uuid not null unique references signals (id),
  symbol text not null,
  status text not null default 'pending'
    check (status in ('pending', 'running', 'done', 'failed')),
  attempts integer not null default 0,
  run_at timestamptz not null default now(),
  locked_by text,
  locked_at timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  finished_at timestamptz
);
comment on table pipeline_jobs is 'One job per accepted signal. Workers on any instance claim with FOR UPDATE SKIP LOCKED, one running job per symbol at a time, in id order.';
create index pipeline_jobs_active on pipeline_jobs (symbol, id)
  where status in ('pending', 'running');
create index pipeline_jobs_ready on pipeline_jobs (run_at, id) where status = 'pending';

-- market data -------------------------------------------------------------

create table context_snapshots (
  id uuid primary key default gen_random_uuid(),
  symbol text not null,
  spot numeric not null check (spot > 0),
  vix numeric,
  trend text check (trend in ('UP', 'DOWN', 'NEUTRAL')),
  as_of timestamptz not null,
  source text not null,
  created_at timestamptz not null default now()
);
comment on table context_snapshots is 'Market context per symbol (spot, VIX, trend) as pushed or fetched; decisions link the snapshot they used.';
create index context_snapshots_symbol_as_of on context_snapshots (symbol, as_of desc);

create table gex_signals (
  id uuid primary key default gen_random_uuid(),
  symbol text not null,
  spot numeric not null check (spot > 0),
  net_gex double precision not null,
  zero_gamma double precision,
  call_wall numeric,
  put_wall numeric,
  regime text not null check (regime in ('POSITIVE', 'NEGATIVE')),
  as_of timestamptz not null,
  source text not null,
  contracts integer not null default 0,
  strikes jsonb not null default '[]',
  created_at timestamptz not null default now()
);
comment on table gex_signals is 'GEX levels computed from an option chain (calls +, puts -), with the per-strike profile.';
create index gex_signals_symbol_as_of on gex_signals (symbol, as_of desc);

-- decisions and positions -------------------------------------------------

create table decisions (
  id uuid primary key default gen_random_uuid(),
  -- Paging cursor: newest first.
  seq bigint generated always as identity unique,
  signal_id uuid not null unique references signals (id),
  outcome text not null check (outcome in ('ENTER', 'EXIT', 'REJECT')),
  reason_code text not null,
  message text not null,
  price numeric,
  quantity numeric,
  notional numeric,
  size_multiplier numeric,
  degraded boolean not null default false,
  notes jsonb not null default '[]',
  context_snapshot_id uuid references context_snapshots (id),
  gex_signal_id uuid references gex_signals (id),
  -- Milliseconds per stage (queue, market_hours, context, gex, decide, write, end_to_end).
  timings jsonb not null default '{}',
  created_at timestamptz not null default now()
);
comment on table decisions is 'The pipeline''s verdict on each signal: ENTER, EXIT or REJECT with a stable reason code, a message and stage timings.';
create index decisions_created_at on decisions (created_at desc);
create index decisions_reason_code on decisions (reason_code);

create table positions (
  id uuid primary key default gen_random_uuid(),
  -- Paging cursor: newest first.
  seq bigint generated always as identity unique,
  symbol text not null,
  direction text not null check (direction in ('CALL', 'PUT')),
  quantity numeric not null check (quantity > 0),
  entry_price numeric not null check (entry_price > 0),
  entry_signal_id uuid not null references signals (id),
  opened_at timestamptz not null,
  is_closed boolean not null default false,
  exit_price numeric,
  exit_signal_id uuid references signals (id),
  closed_at timestamptz,
  realized_pnl numeric,
  updated_at timestamptz not null default now(),
  check (is_closed = (closed_at is not null))
);
comment on table positions is 'Positions on the underlying: CALL is long, PUT is short. At most one open position per symbol and direction.';
create index idx_positions_is_closed on positions (is_closed);
create unique index positions_one_open_per_side on positions (symbol, direction) where not is_closed;
create index positions_closed_at on positions (closed_at desc) where is_closed;

-- errors --------------------------------------------------------------------

create table processing_errors (
  id bigint generated always as identity primary key,
  signal_id uuid references signals (id),
  correlation_id text,
  -- Where it happened: 'ingest' (the webhook refused it) or a pipeline stage.
  stage text not null,
  code text not null,
  message text not null,
  http_status integer,
  client_ip text,
  -- The request body with any secret removed, truncated; text because it may not be JSON.
  payload text,
  details jsonb not null default '{}',
  created_at timestamptz not null default now()
);
comment on table processing_errors is 'What was refused or failed: rejected webhooks (secret removed), duplicate deliveries, and pipeline stages that gave up.';
create index processing_errors_created_at on processing_errors (created_at desc);
create index processing_errors_code on processing_errors (code, created_at desc);
create index processing_errors_signal on processing_errors (signal_id) where signal_id is not null;

-- live events -------------------------------------------------------------

create table events (
  id bigint generated always as identity primary key,
  -- The writing transaction. Readers deliver in (txid, id) order and only
  -- events older than every transaction still running, so an event that
  -- commits late can never slip in behind a cursor (no gaps on reconnect).
  txid xid8 not null default pg_current_xact_id(),
  kind text not null check (kind in ('signal', 'decision', 'position', 'failure')),
  symbol text,
  payload jsonb not null,
  created_at timestamptz not null default now()
);
comment on table events is 'Outbox of live events (new signals, decisions, position changes, jobs given up) for GET /events; written in the same transaction as the change, announced with NOTIFY.';
create index events_txid_id on events (txid, id);
create index events_created_at on events (created_at);

insert into schema_migrations (version, name) values ('20261122000000', 'initial_schema')
  on conflict (version) do nothing;
