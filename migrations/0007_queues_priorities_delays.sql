-- Named queues, priorities and delayed jobs.
--
-- A job belongs to one queue and has a priority (higher runs first). A job created with a
-- due time in the future waits as 'scheduled' (with its time in run_after) until a runner
-- promotes it to 'open': kept out of the open claim index, a million delayed jobs cost the
-- claim nothing.
ALTER TABLE jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
-- When the job was due to run first, if it was delayed (run_after is the gate, and is cleared
-- once the job finishes; this stays).
ALTER TABLE jobs ADD COLUMN run_at timestamptz;
ALTER TABLE jobs ADD CONSTRAINT jobs_priority_check CHECK (priority BETWEEN -100 AND 100);
-- The application checks a queue's characters; a regular expression here would be run on
-- every update of every job (about 4 us each, measured), so the database checks the length.
ALTER TABLE jobs ADD CONSTRAINT jobs_queue_check CHECK (char_length(queue) BETWEEN 1 AND 63);

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'scheduled', 'open', 'in_queue', 'processing', 'completed',
    'failed', 'retry_in_queued', 'retrying', 'failed_final', 'aborted'
));
-- A scheduled job always says when it is due.
ALTER TABLE jobs ADD CONSTRAINT jobs_scheduled_has_time CHECK (
    status <> 'scheduled' OR run_after IS NOT NULL
);

-- The claim path for open jobs: by queue, then in claim order (higher priority first, then
-- the oldest). One index serves a claim of any set of queues: a second one, ordered for
-- "every queue", cost 10-20 % more PostgreSQL CPU per job (vacuum scans every index).
DROP INDEX jobs_claim_open_idx;
CREATE INDEX jobs_claim_open_idx ON jobs (queue, priority DESC, id) WHERE status = 'open';
-- Delayed jobs by due time, for their promotion and for the runner's sleep.
CREATE INDEX jobs_scheduled_idx ON jobs (run_after) WHERE status = 'scheduled';

-- Promote delayed jobs that are due (a bounded batch): they become open and are claimed like
-- any other. A first_time runner calls it when its lookup of the earliest due time says one
-- is due. The status trigger announces them, so runners of other queues wake too.
CREATE FUNCTION promote_due_jobs(max_jobs integer) RETURNS integer
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    promoted integer;
BEGIN
    UPDATE jobs SET status = 'open', updated_at = now()
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM jobs
        WHERE status = 'scheduled' AND run_after <= now()
        ORDER BY run_after
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ));
    GET DIAGNOSTICS promoted = ROW_COUNT;
    RETURN promoted;
END
$$;

-- The claims now take the runner's queues (NULL: every queue). Planning is fixed as in
-- 0006: sorts, bitmap and sequential scans are off inside, so each pick walks an index in
-- claim order and stops after the rows it claims. JIT is off too: the one sort left (the
-- best of a few candidates) then costs "disabled", far above jit_above_cost, and JIT
-- compiling every claim took 150 ms (measured).
DROP FUNCTION claim_open_jobs(integer, text);
DROP FUNCTION claim_due_retries(integer, text);

-- first_time: the open jobs of the runner's queues, higher priority first, then the oldest.
-- The index is walked once per queue, reading at most max_jobs rows each, and the best
-- max_jobs of those are kept; the rows read but not kept are locked only until the claim
-- commits. For every queue (NULL), the queues that have open jobs are found in the same
-- statement by skipping through jobs_claim_open_idx, one probe per queue. Each branch is one
-- statement: a claim of ten jobs cannot afford a second one (delayed jobs are promoted by
-- the runner, only when one is due).
CREATE FUNCTION claim_open_jobs(max_jobs integer, runner text, queues text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
IF queues IS NULL THEN
    RETURN QUERY
    WITH RECURSIVE waiting(name) AS (
        (SELECT queue FROM jobs WHERE status = 'open' ORDER BY queue LIMIT 1)
        UNION ALL
        SELECT (SELECT queue FROM jobs
                WHERE status = 'open' AND queue > waiting.name
                ORDER BY queue LIMIT 1)
        FROM waiting WHERE waiting.name IS NOT NULL
    ), candidates AS (
        SELECT c.ctid, c.priority, c.id
        FROM waiting
        CROSS JOIN LATERAL (
            SELECT ctid, priority, id FROM jobs
            WHERE status = 'open' AND queue = waiting.name
            ORDER BY priority DESC, id
            LIMIT max_jobs
            FOR UPDATE SKIP LOCKED
        ) AS c
        WHERE waiting.name IS NOT NULL
    ), picked AS (
        SELECT ctid FROM candidates ORDER BY priority DESC, id LIMIT max_jobs
    )
    UPDATE jobs
    SET status = 'in_queue', runner_id = runner, heartbeat_at = now(), updated_at = now()
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING *;
ELSE
    RETURN QUERY
    WITH candidates AS (
        SELECT c.ctid, c.priority, c.id
        FROM unnest(queues) AS wanted(name)
        CROSS JOIN LATERAL (
            SELECT ctid, priority, id FROM jobs
            WHERE status = 'open' AND queue = wanted.name
            ORDER BY priority DESC, id
            LIMIT max_jobs
            FOR UPDATE SKIP LOCKED
        ) AS c
    ), picked AS (
        SELECT ctid FROM candidates ORDER BY priority DESC, id LIMIT max_jobs
    )
    UPDATE jobs
    SET status = 'in_queue', runner_id = runner, heartbeat_at = now(), updated_at = now()
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING *;
END IF;
END
$$;

-- retry: failed jobs of the runner's queues that are due and have retries left, longest
-- due first. Uses jobs_claim_retry_idx (the queue is a filter: retries are few).
CREATE FUNCTION claim_due_retries(max_jobs integer, runner text, queues text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
RETURN QUERY
WITH picked AS (
    SELECT ctid FROM jobs
    WHERE status = 'failed' AND run_after <= now() AND attempts <= retry_count
      AND (queues IS NULL OR queue = ANY(queues))
    ORDER BY run_after, id
    LIMIT max_jobs
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'retry_in_queued', runner_id = runner, heartbeat_at = now(), updated_at = now()
WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
RETURNING *;
END
$$;
