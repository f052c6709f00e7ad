-- The two claims, as functions that fix their own plan. The only good plan for a claim walks
-- an index in claim order, stops after the rows it claims and looks them up by primary key.
-- The planner works from statistics, and after a quiet spell they say that no job waits: a
-- new or idle deployment, or the time before a burst of failures. Measured with such
-- statistics, it then read and sorted every waiting job to claim a queue's worth (5-10 ms
-- for 100 of 20,000 jobs; 40-78 ms of 200,000) or, on a table it took for empty, scanned the
-- whole table, on every claim until the next ANALYZE, against 1-2 ms. With sorts, bitmap
-- scans and sequential scans off inside the function, the ordered index scan and the
-- primary-key lookup are the plan left. A SQL function's statement is planned at each call
-- (0.1-0.3 ms measured), with the arguments and the table's current size known. A PL/pgSQL
-- function keeps one plan for the session instead: kept from an empty table, it looked the
-- claimed ids up through jobs_type_list_idx, 130-190 ms per claim out of 200,000 jobs.
--
-- Each claim: the CTE fences the LIMIT so that no more rows are updated than asked for, and
-- SKIP LOCKED lets runners claim side by side. The picked ids reach the update as an array,
-- not joined back: a join's plan follows the guessed row count.

-- first_time: the oldest open jobs. Uses jobs_claim_open_idx (or jobs_status_list_idx).
CREATE FUNCTION claim_open_jobs(max_jobs integer, runner text) RETURNS SETOF jobs
LANGUAGE sql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'open'
    ORDER BY id
    LIMIT max_jobs
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'in_queue', runner_id = runner, heartbeat_at = now(), updated_at = now()
WHERE id = ANY(ARRAY(SELECT id FROM picked))
RETURNING *
$$;

-- retry: failed jobs that are due and have retries left, longest due first.
-- Uses jobs_claim_retry_idx.
CREATE FUNCTION claim_due_retries(max_jobs integer, runner text) RETURNS SETOF jobs
LANGUAGE sql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'failed' AND run_after <= now() AND attempts <= retry_count
    ORDER BY run_after, id
    LIMIT max_jobs
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'retry_in_queued', runner_id = runner, heartbeat_at = now(), updated_at = now()
WHERE id = ANY(ARRAY(SELECT id FROM picked))
RETURNING *
$$;
