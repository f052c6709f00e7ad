"""Every runtime SQL statement, named noun-first, each with the index it relies on.

Every statement that moves a job is guarded by the state it expects the job to be in and,
for held jobs, by the runner that holds it: a statement that finds nothing to change means
the job moved under us, and the caller treats that as an error, never as success.
"""

from __future__ import annotations

JOB_INSERT = """
INSERT INTO jobs (job_type, data, retry_count, retry_interval)
VALUES ($1, $2, $3, $4)
RETURNING *
"""

# Uses jobs_uuid_key.
JOB_GET_BY_UUID = "SELECT * FROM jobs WHERE uuid = $1"

# Newest first. Uses the primary key, or jobs_status_list_idx / jobs_type_list_idx.
JOB_LIST = """
SELECT * FROM jobs
WHERE ($1::text IS NULL OR job_type = $1)
  AND ($2::text[] IS NULL OR status = ANY($2::text[]))
ORDER BY id DESC
LIMIT $3
"""

# The first_time claim. Uses jobs_claim_open_idx. The CTE fences the LIMIT so the planner
# cannot update more rows than asked for; SKIP LOCKED lets runners claim side by side.
JOB_CLAIM_OPEN = """
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'open'
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'in_queue', runner_id = $2, heartbeat_at = now(), updated_at = now()
FROM picked
WHERE jobs.id = picked.id
RETURNING jobs.*
"""

# The retry claim: failed jobs that are due and still have retries left.
# Uses jobs_claim_retry_idx.
JOB_CLAIM_RETRY = """
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'failed' AND run_after <= now() AND attempts <= retry_count
    ORDER BY run_after, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'retry_in_queued', runner_id = $2, heartbeat_at = now(), updated_at = now()
FROM picked
WHERE jobs.id = picked.id
RETURNING jobs.*
"""

# Seconds until the earliest failed job becomes due (negative: overdue; NULL: none).
# Uses jobs_claim_retry_idx.
JOB_RETRY_NEXT_DUE = """
SELECT extract(epoch FROM min(run_after) - now())::double precision
FROM jobs
WHERE status = 'failed' AND run_after IS NOT NULL AND attempts <= retry_count
"""

# Primary key; guarded by state and holder. Starting a run counts an attempt.
JOB_START = """
UPDATE jobs
SET status = $4, attempts = attempts + 1, started_at = now(), completed_at = NULL,
    heartbeat_at = now(), updated_at = now()
WHERE id = $1 AND status = $2 AND runner_id = $3
RETURNING attempts
"""

# Progress of a running job, merged into its job_response; also a sign of life.
JOB_REPORT_PROGRESS = """
UPDATE jobs
SET job_response = job_response || $4, heartbeat_at = now(), updated_at = now()
WHERE id = $1 AND status = $2 AND runner_id = $3
RETURNING id
"""

JOB_COMPLETE = """
UPDATE jobs
SET status = 'completed', job_response = $4, run_after = NULL, runner_id = NULL,
    heartbeat_at = NULL, completed_at = now(), updated_at = now()
WHERE id = $1 AND status = $2 AND runner_id = $3
RETURNING id
"""

# $5 is the delay before the next attempt in seconds, NULL when no retry is left.
JOB_FAIL = """
UPDATE jobs
SET status = 'failed', job_response = $4,
    run_after = now() + make_interval(secs => $5::double precision),
    runner_id = NULL, heartbeat_at = NULL, completed_at = now(), updated_at = now()
WHERE id = $1 AND status = $2 AND runner_id = $3
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
