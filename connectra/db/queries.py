"""Every runtime SQL statement, named noun-first, each with the index it relies on.

Every statement that moves a job is guarded by the state it expects and, for held jobs, by the
runner holding it; held jobs are found by primary key.
Why `status IS NOT DISTINCT FROM $n`: no status index can serve it, whatever the statistics.
"""

from __future__ import annotations

# Create jobs, one or many in one statement (arrays of equal length, in this order: job_type,
# data as JSON text, retry_count, retry_interval, queue, priority, run_at, delay_seconds,
# request_id, created_by). A job
# whose due time (run_at, or now + delay_seconds) is in the future waits as 'scheduled' with
# that time in run_after; any other is open at once. run_at keeps the due time it was given.
# The data is sent as text and cast here, so the statement works on a caller's own connection
# whatever jsonb codec it has. Rows come back in the order given.
JOB_INSERT = """
INSERT INTO jobs (job_type, data, retry_count, retry_interval, queue, priority, status,
                  run_after, run_at, request_id, created_by)
SELECT n.job_type, n.data::jsonb, n.retry_count, n.retry_interval, n.queue, n.priority,
       CASE WHEN n.due > now() THEN 'scheduled' ELSE 'open' END,
       CASE WHEN n.due > now() THEN n.due END, n.due, n.request_id, n.created_by
FROM (
    SELECT t.*, coalesce(t.run_at, now() + make_interval(secs => t.delay_seconds)) AS due
    FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[], $5::text[],
                $6::integer[], $7::timestamptz[], $8::double precision[], $9::text[],
                $10::text[])
         WITH ORDINALITY AS t(job_type, data, retry_count, retry_interval, queue, priority,
                              run_at, delay_seconds, request_id, created_by, position)
) AS n
ORDER BY n.position
RETURNING *
"""

# The announcement of new jobs (channel 'connectra_jobs', payload 'open'); inside a
# transaction PostgreSQL sends it at commit.
JOBS_ANNOUNCE = "SELECT pg_notify($1, $2)"

# Uses jobs_uuid_key.
JOB_GET_BY_UUID = "SELECT * FROM jobs WHERE uuid = $1"

# A job as the API key $2, which sees only the jobs it created, may see it. Uses jobs_uuid_key.
JOB_GET_BY_UUID_OWNED = "SELECT * FROM jobs WHERE uuid = $1 AND created_by = $2"

# Newest first, a page at a time: $5 is the id the previous page ended at (a keyset cursor).
# Uses the primary key, or jobs_status_list_idx / jobs_type_list_idx; the queue is a filter.
JOB_LIST = """
SELECT * FROM jobs
WHERE ($1::text IS NULL OR job_type = $1)
  AND ($2::text[] IS NULL OR status = ANY($2::text[]))
  AND ($4::text[] IS NULL OR queue = ANY($4::text[]))
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC
LIMIT $3
"""

# JOB_LIST of the jobs API key $6 created (a key without the admin scope sees only those).
# Uses jobs_created_by_idx (created_by, id DESC); the other filters are filters.
JOB_LIST_OWNED = """
SELECT * FROM jobs
WHERE created_by = $6
  AND ($1::text IS NULL OR job_type = $1)
  AND ($2::text[] IS NULL OR status = ANY($2::text[]))
  AND ($4::text[] IS NULL OR queue = ANY($4::text[]))
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC
LIMIT $3
"""

# The dashboard's counts for a key without the admin scope: its newest $2 jobs by status and
# queue, one bounded walk of jobs_created_by_idx.
JOB_COUNT_OWNED_BY_QUEUE = """
SELECT status, queue, count(*) AS jobs
FROM (SELECT status, queue FROM jobs WHERE created_by = $1 ORDER BY id DESC LIMIT $2) AS newest
GROUP BY status, queue
"""

# Jobs by status and queue for the dashboard's finished states, at most $2 jobs counted per
# state in $1: bounded whatever the table holds (JOB_COUNT_UNFINISHED_BY_QUEUE counts the
# others exactly; a state with $2 or more shows JOB_ESTIMATE_FINISHED instead). Run after
# JOB_COUNT_BOUNDED_PLAN in the same transaction, so that each state is one limited scan of
# jobs_status_list_idx (status, id DESC): left to itself the planner may walk the primary key
# or the table and filter, reading every job of a big table (300 ms against 7 ms at 350,000
# jobs).
JOB_COUNT_BOUNDED_PLAN = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
JOB_COUNT_BOUNDED_BY_QUEUE = """
SELECT s.status, j.queue, count(*) AS jobs
FROM unnest($1::text[]) AS s(status)
CROSS JOIN LATERAL (SELECT queue FROM jobs WHERE jobs.status = s.status LIMIT $2) AS j
GROUP BY s.status, j.queue
"""

# The two claims (up to $1 jobs for runner $2, from queues $3, NULL: every queue) are PL/pgSQL
# functions that fix their own plan: migrations/0007_queues_priorities_delays.sql.
JOB_CLAIM_OPEN = "SELECT * FROM claim_open_jobs($1, $2, $3)"
JOB_CLAIM_RETRY = "SELECT * FROM claim_due_retries($1, $2, $3)"

# Make due delayed jobs open (up to $1): a PL/pgSQL function in
# migrations/0007_queues_priorities_delays.sql; uses jobs_scheduled_idx.
JOB_PROMOTE_DUE = "SELECT promote_due_jobs($1)"

# Seconds until the earliest delayed job of queues $1 becomes due (negative: overdue; NULL:
# none). Uses jobs_scheduled_idx.
JOB_SCHEDULED_NEXT_DUE = """
SELECT extract(epoch FROM min(run_after) - now())::double precision
FROM jobs
WHERE status = 'scheduled' AND ($1::text[] IS NULL OR queue = ANY($1::text[]))
"""

# Seconds until the earliest failed job of queues $1 becomes due (negative: overdue; NULL:
# none). Uses jobs_claim_retry_idx.
JOB_RETRY_NEXT_DUE = """
SELECT extract(epoch FROM min(run_after) - now())::double precision
FROM jobs
WHERE status = 'failed' AND run_after IS NOT NULL AND attempts <= retry_count
  AND ($1::text[] IS NULL OR queue = ANY($1::text[]))
"""

# One round of the runner's status writer: start held jobs ($1; queued $2 -> running $4, held
# by runner $3) and complete others ($5 ids with $6 responses; running $4, held by $3). Two
# plain updates in one statement: one round trip and one commit for both (a job is never in
# both lists). Primary key; each row guarded by state and holder: a job missing from the
# result was not ours in the expected state. Starting a run counts an attempt. Rows come back
# as (id, attempts) for starts and (id, NULL) for completions.
JOB_START_AND_COMPLETE = """
WITH started AS (
    UPDATE jobs
    SET status = $4, attempts = attempts + 1, started_at = now(), completed_at = NULL,
        heartbeat_at = now(), updated_at = now()
    WHERE id = ANY($1::bigint[]) AND status IS NOT DISTINCT FROM $2 AND runner_id = $3
    RETURNING id, attempts
), completed AS (
    UPDATE jobs
    SET status = 'completed', job_response = done.response, run_after = NULL,
        runner_id = NULL, heartbeat_at = NULL, completed_at = now(), updated_at = now()
    FROM unnest($5::bigint[], $6::jsonb[]) AS done(id, response)
    WHERE jobs.id = done.id AND jobs.status IS NOT DISTINCT FROM $4 AND jobs.runner_id = $3
    RETURNING jobs.id
)
SELECT id, attempts FROM started
UNION ALL
SELECT id, NULL FROM completed
"""

# Where a job stands: after a write whose answer was lost with the connection, this tells
# whether the write was committed. Primary key.
JOB_STATE = "SELECT status, attempts, runner_id FROM jobs WHERE id = $1"

# Progress of a running job, merged into its job_response; also a sign of life.
JOB_REPORT_PROGRESS = """
UPDATE jobs
SET job_response = job_response || $4, heartbeat_at = now(), updated_at = now()
WHERE id = $1 AND status IS NOT DISTINCT FROM $2 AND runner_id = $3
RETURNING id
"""

# Merged, so progress counts of the failed attempt stay visible.
# $5 is 'failed' (with $6 the delay before the next attempt) or 'failed_final' ($6 NULL).
JOB_FAIL = """
UPDATE jobs
SET status = $5, job_response = job_response || $4,
    run_after = now() + make_interval(secs => $6::double precision),
    runner_id = NULL, heartbeat_at = NULL, completed_at = now(), updated_at = now()
WHERE id = $1 AND status IS NOT DISTINCT FROM $2 AND runner_id = $3
RETURNING id
"""

# A running job stopped because a user cancelled it.
JOB_ABORT_RUNNING = """
UPDATE jobs
SET status = 'aborted', job_response = job_response || $4, run_after = NULL,
    runner_id = NULL, heartbeat_at = NULL, completed_at = now(), updated_at = now()
WHERE id = $1 AND status IS NOT DISTINCT FROM $2 AND runner_id = $3
RETURNING id
"""

# Shutdown hands back what this runner holds: queued jobs untouched, and runs cut short
# with the attempt they started given back, so a stop never uses up a retry.
# Uses the primary key; guarded by holder and by the two held states ($2 queued, $3 running).
JOB_HAND_BACK = """
UPDATE jobs
SET status = $4,
    attempts = attempts - CASE WHEN status = $3 THEN 1 ELSE 0 END,
    started_at = CASE WHEN status = $3 THEN NULL ELSE started_at END,
    run_after = CASE WHEN $4 = 'failed' THEN now() ELSE run_after END,
    runner_id = NULL, heartbeat_at = NULL, updated_at = now()
WHERE id = ANY($1::bigint[]) AND runner_id = $5 AND status IN ($2, $3)
RETURNING id
"""

# -- leases ----------------------------------------------------------------------------------

# Refresh the jobs this runner knows it holds ($4; $2 queued, $3 running); what is missing
# from the result was taken away from us. A job held in the table but not known in memory
# (its claim was written but the answer lost to a dropped connection) is not renewed, so its
# lease runs out and the rescuer takes it back. Uses the primary key.
JOB_HEARTBEAT = """
UPDATE jobs
SET heartbeat_at = now()
WHERE id = ANY($4::bigint[]) AND runner_id = $1 AND status IN ($2, $3)
RETURNING id, cancel_requested_at IS NOT NULL AS cancel_requested
"""

# Held jobs whose runner has not heartbeated for $1 seconds. Uses jobs_heartbeat_idx.
JOB_RESCUE_CANDIDATES = """
SELECT * FROM jobs
WHERE status IN ('in_queue', 'processing', 'retry_in_queued', 'retrying')
  AND heartbeat_at < now() - make_interval(secs => $1::double precision)
ORDER BY heartbeat_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""

# $2 new status, $3 delay before the retry (NULL: none), $4 fields merged into job_response.
JOB_RESCUE = """
UPDATE jobs
SET status = $2,
    run_after = now() + make_interval(secs => $3::double precision),
    completed_at = CASE WHEN $2 IN ('failed', 'failed_final', 'aborted') THEN now() END,
    job_response = job_response || $4,
    rescue_count = rescue_count + 1, runner_id = NULL, heartbeat_at = NULL, updated_at = now()
WHERE id = $1
"""

# Save how far a resumable job got. Guarded like every write of a held job.
JOB_SAVE_CHECKPOINT = """
UPDATE jobs
SET checkpoint = $4, heartbeat_at = now(), updated_at = now()
WHERE id = $1 AND status IS NOT DISTINCT FROM $2 AND runner_id = $3
RETURNING id
"""

# The multipart uploads held jobs have open (an export's checkpoint names its upload), which
# retention must not abort however old they are. Reads only held jobs (jobs_status_list_idx,
# or jobs_heartbeat_idx, whose predicate is these states).
JOB_OPEN_UPLOAD_IDS = """
SELECT checkpoint -> 'multipart_upload' ->> 'upload_id' AS upload_id FROM jobs
WHERE status IN ('in_queue', 'processing', 'retry_in_queued', 'retrying')
  AND checkpoint ? 'multipart_upload'
"""

# -- job control -----------------------------------------------------------------------------

# Cancel a job nobody is running: it is aborted at once. Uses jobs_uuid_key.
JOB_CANCEL_WAITING = """
UPDATE jobs
SET status = 'aborted', cancel_requested_at = now(), run_after = NULL, runner_id = NULL,
    heartbeat_at = NULL, completed_at = now(), updated_at = now(),
    job_response = job_response || '{"messages": "job cancelled"}'::jsonb
WHERE uuid = $1 AND status IN ('scheduled', 'open', 'in_queue', 'failed', 'retry_in_queued')
RETURNING *
"""

# Cancel a running job: the runner holding it sees the request and stops it.
JOB_CANCEL_RUNNING = """
UPDATE jobs
SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
WHERE uuid = $1 AND status IN ('processing', 'retrying')
RETURNING *
"""

# A manual retry: a failed job starts over as open with a fresh attempt budget.
JOB_REOPEN = """
UPDATE jobs
SET status = 'open', attempts = 0, run_after = NULL, completed_at = NULL,
    cancel_requested_at = NULL, updated_at = now(),
    job_response = job_response || '{"messages": "reopened for a manual retry"}'::jsonb
WHERE uuid = $1 AND status IN ('failed', 'failed_final')
RETURNING *
"""

# -- idempotency keys ------------------------------------------------------------------------

IDEMPOTENCY_KEY_DROP_EXPIRED = (
    "DELETE FROM job_idempotency_keys WHERE key = $1 AND expires_at <= now()"
)

IDEMPOTENCY_KEY_GET = """
SELECT k.fingerprint, j.* FROM job_idempotency_keys k JOIN jobs j ON j.id = k.job_id
WHERE k.key = $1
"""

# Waits for a concurrent insert of the same key, then does nothing: the caller retries.
IDEMPOTENCY_KEY_INSERT = """
INSERT INTO job_idempotency_keys (key, fingerprint, job_id, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4::double precision))
ON CONFLICT (key) DO NOTHING
RETURNING key
"""

# -- retention ---------------------------------------------------------------------------------

# Finished jobs older than $1 days, a small batch at a time. Uses jobs_finished_idx.
JOB_DELETE_EXPIRED = """
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status IN ('completed', 'failed_final', 'aborted')
      AND completed_at < now() - $1::double precision * interval '1 day'
    ORDER BY completed_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs USING doomed WHERE jobs.id = doomed.id
RETURNING jobs.id, jobs.job_type, jobs.data, jobs.job_response
"""

# Finished jobs whose result objects are older than $1 days and not yet deleted.
JOB_RESULTS_EXPIRED = """
SELECT id, job_type, data, job_response FROM jobs
WHERE status IN ('completed', 'failed_final', 'aborted')
  AND completed_at < now() - $1::double precision * interval '1 day'
  AND ((job_type = 'export_csv_file' AND job_response ? 's3_key')
       OR job_response ? 'failed_rows_s3_key')
  AND NOT job_response ? 'results_deleted_at'
ORDER BY completed_at
LIMIT $2
"""

JOB_MARK_RESULTS_DELETED = """
UPDATE jobs
SET job_response = job_response || jsonb_build_object('results_deleted_at', now())
WHERE id = $1
"""

IDEMPOTENCY_KEY_DELETE_EXPIRED = """
DELETE FROM job_idempotency_keys
WHERE key IN (
    SELECT key FROM job_idempotency_keys WHERE expires_at <= now() LIMIT $1
)
"""

# -- cron schedules ----------------------------------------------------------------------------
# The schedules table is small (one row per schedule): reads scan it or use its primary key.

# The database's clock: every runner judges ticks by it, whatever its machine's clock says.
DATABASE_NOW = "SELECT clock_timestamp()"

# Every schedule, by name. Primary key.
SCHEDULE_LIST = "SELECT * FROM schedules ORDER BY name"

# Primary key.
SCHEDULE_GET = "SELECT * FROM schedules WHERE name = $1"

# The schedules that may fire. A scan of the small table.
SCHEDULE_LIST_ACTIVE = "SELECT * FROM schedules WHERE NOT paused ORDER BY name"

# Add a schedule at run time; NULL when the name is taken. Primary key.
SCHEDULE_INSERT = """
INSERT INTO schedules (name, cron, timezone, job_type, data, queue, priority, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'api')
ON CONFLICT (name) DO NOTHING
RETURNING *
"""

# The schedules declared in code (arrays of equal length, sorted by name so that processes
# starting together lock the rows in the same order): their definition is written, `paused`
# and `last_tick_at` are kept, and a row that would not change is not written. Primary key.
SCHEDULE_UPSERT_FROM_CODE = """
INSERT INTO schedules AS s (name, cron, timezone, job_type, data, queue, priority, source)
SELECT d.name, d.cron, d.timezone, d.job_type, d.data, d.queue, d.priority, 'code'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
            $7::integer[]) WITH ORDINALITY AS d(name, cron, timezone, job_type, data, queue,
                                                priority, position)
ORDER BY d.position
ON CONFLICT (name) DO UPDATE
SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, job_type = EXCLUDED.job_type,
    data = EXCLUDED.data, queue = EXCLUDED.queue, priority = EXCLUDED.priority,
    source = 'code', updated_at = now()
WHERE (s.cron, s.timezone, s.job_type, s.data, s.queue, s.priority, s.source)
      IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.job_type, EXCLUDED.data,
                        EXCLUDED.queue, EXCLUDED.priority, 'code')
RETURNING s.name
"""

# Primary key.
SCHEDULE_DELETE = "DELETE FROM schedules WHERE name = $1 RETURNING *"

# Primary key.
SCHEDULE_PAUSE = """
UPDATE schedules SET paused = true, updated_at = now() WHERE name = $1 RETURNING *
"""

# A schedule and the database's clock, locked for a resume. Primary key.
SCHEDULE_LOCK = "SELECT *, clock_timestamp() AS db_now FROM schedules WHERE name = $1 FOR UPDATE"

# Resume; $2 (the latest tick, passed over while paused, or NULL) moves last_tick_at forward
# so that resuming does not fire a tick missed while paused. Primary key.
SCHEDULE_RESUME = """
UPDATE schedules
SET paused = false, last_tick_at = greatest(last_tick_at, $2), updated_at = now()
WHERE name = $1
RETURNING *
"""

# Take tick $2 of schedule $1: moves last_tick_at forward, only forward, and only for an
# active schedule. Of runners racing for one tick, the first commits and the others, waiting
# on its row lock, then find last_tick_at = $2 and get no row. Primary key.
SCHEDULE_CLAIM_TICK = """
UPDATE schedules SET last_tick_at = $2
WHERE name = $1 AND NOT paused AND (last_tick_at IS NULL OR last_tick_at < $2)
RETURNING name
"""

# The job of a schedule's tick, open at once; no row when the tick's job exists already
# (the second guard of exactly once: jobs_schedule_tick_key).
JOB_INSERT_FOR_TICK = """
INSERT INTO jobs (job_type, data, retry_count, retry_interval, queue, priority, status,
                  schedule_name, schedule_tick_at)
VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8)
ON CONFLICT (schedule_name, schedule_tick_at) WHERE schedule_name IS NOT NULL DO NOTHING
RETURNING *
"""

# -- runner presence and the figures /metrics and /readyz read ---------------------------------
# The runners table is small (one row per runner, migrations/0010_runners.sql): primary key
# for a runner's own row, a scan of the table otherwise.

# A runner's row, written when it starts and after every heartbeat round. Primary key; only
# last_seen_at changes on a repeat (not indexed: a HOT update).
RUNNER_UPSERT = """
INSERT INTO runners (id, kind, queues, host, pid, heartbeat_interval)
VALUES ($1, $2, $3, $4, $5, make_interval(secs => $6::double precision))
ON CONFLICT (id) DO UPDATE SET last_seen_at = now()
"""

# A runner that stops says so. Primary key.
RUNNER_DELETE = "DELETE FROM runners WHERE id = $1"

# Rows of runners not seen for $1 seconds (they died without saying so). A scan of the table.
RUNNER_DELETE_STALE = """
DELETE FROM runners WHERE last_seen_at < now() - make_interval(secs => $1::double precision)
"""

# Per runner kind: how many runners are live (their last heartbeat round younger than twice
# their own heartbeat interval), and how long ago one was last seen. A scan of the table.
RUNNER_LIVE_BY_KIND = """
SELECT kind,
       count(*) FILTER (WHERE last_seen_at > now() - 2 * heartbeat_interval) AS live,
       extract(epoch FROM now() - max(last_seen_at))::double precision AS last_seen_seconds
FROM runners
GROUP BY kind
"""

# Exact counts of the jobs waiting or running, by status and queue. Each branch repeats the
# predicate of a partial index, so that it reads only the jobs in those states, however many
# finished jobs the table holds: jobs_claim_open_idx (open; queue is its first column),
# jobs_scheduled_idx (scheduled), jobs_claim_retry_idx (failed: every failed job has a
# run_after), jobs_heartbeat_idx (the four held states; at most the runners' queues and slots).
# Run after JOB_COUNTS_PLAN, in its transaction: a plan that scans the whole table is never
# chosen, and a count slower than the timeout fails the scrape instead of piling up.
JOB_COUNT_UNFINISHED_BY_QUEUE = """
SELECT 'open' AS status, queue, count(*) AS jobs FROM jobs
WHERE status = 'open' GROUP BY queue
UNION ALL
SELECT 'scheduled', queue, count(*) FROM jobs
WHERE status = 'scheduled' GROUP BY queue
UNION ALL
SELECT 'failed', queue, count(*) FROM jobs
WHERE status = 'failed' AND run_after IS NOT NULL GROUP BY queue
UNION ALL
SELECT status, queue, count(*) FROM jobs
WHERE status IN ('in_queue', 'processing', 'retry_in_queued', 'retrying') GROUP BY status, queue
"""
JOB_COUNTS_PLAN = "SET LOCAL enable_seqscan = off; SET LOCAL statement_timeout = '2s'"

# Finished jobs ($1: their states) estimated from PostgreSQL's statistics instead of counted
# (millions of rows): the share of each state among the sampled rows of jobs.status
# (pg_stats.most_common_freqs, as of the last ANALYZE) times the table's rows, scaled to its
# current size as the planner does (reltuples per page times the pages it has now). A state
# missing from the statistics is left out. Reads the catalog only, never jobs.
JOB_ESTIMATE_FINISHED = """
SELECT f.status,
       round(f.share * CASE WHEN c.relpages > 0
           THEN c.reltuples / c.relpages
                * (pg_relation_size(c.oid) / current_setting('block_size')::integer)
           ELSE greatest(c.reltuples, 0) END)::bigint AS jobs
FROM pg_class AS c
CROSS JOIN LATERAL (
    SELECT v.status, v.share
    FROM pg_stats AS s,
         unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS v(status, share)
    WHERE s.schemaname = current_schema() AND s.tablename = 'jobs' AND s.attname = 'status'
) AS f
WHERE c.oid = 'jobs'::regclass AND f.status = ANY($1::text[])
"""

# -- API keys ----------------------------------------------------------------------------------
# The api_keys table is small (one row per key, migrations/0012_api_keys.sql): primary key
# (name) or api_keys_key_id_key. Secrets are never stored, only their SHA-256.

# An active key by the id its secret shows. api_keys_key_id_key.
API_KEY_GET_ACTIVE = "SELECT * FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL"

# Every key, revoked ones too, by name.
API_KEY_LIST = "SELECT * FROM api_keys ORDER BY name"

# Whether any key is active: the API starts without API_KEYS only then.
API_KEY_ANY_ACTIVE = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)"

# A new key; no row when the name is taken, by an active or a revoked key. Primary key.
API_KEY_INSERT = """
INSERT INTO api_keys (name, key_id, secret_hash, scope) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING *
"""

# A new secret for an active key: a new key id too, so that no cache holding the old one
# can refuse the new secret. Primary key.
API_KEY_ROTATE = """
UPDATE api_keys SET key_id = $2, secret_hash = $3, rotated_at = now()
WHERE name = $1 AND revoked_at IS NULL
RETURNING *
"""

# Primary key.
API_KEY_REVOKE = """
UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING *
"""

# When a key was last accepted, to the minute: written at most once a minute per key (and
# only when a process looks the key up again, every API_KEY_CACHE_SECONDS at most).
API_KEY_TOUCH = """
UPDATE api_keys SET last_used_at = now()
WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""
