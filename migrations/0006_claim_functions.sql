-- The two claims, as functions that fix their own plan. The only good plan for a claim walks
-- an index in claim order and stops after the rows it claims. The planner works from
-- statistics, and after a quiet spell they say that no job waits: a new or idle deployment,
-- or the time before a burst of failures. Measured with such statistics, it then read and
-- sorted every waiting job to claim a queue's worth (5-10 ms for 100 of 20,000 jobs; 40-78 ms
-- of 200,000) or, on a plan made for an empty table, scanned the whole table, on every claim
-- until the next ANALYZE, against 1-2 ms. Inside the functions sorts, bitmap scans and
-- sequential scans are off, so an index scan in claim order is the plan left for the pick.
--
-- The picked rows are then updated by their row address (ctid), which they keep while the
-- pick holds their lock: a TID scan, the same under any plan. (A row that another transaction
-- changed after the claim's snapshot, and that is still claimable, is not updated by that
-- address; it stays open for the next claim.) Looked up by id instead, a plan
-- PL/pgSQL kept from an empty table walked all of jobs_type_list_idx for them (130-190 ms per
-- claim out of 200,000 jobs), and a join back to the table, on a generic plan, hashed the
-- whole table on every claim. PL/pgSQL keeps each function's plan for the session, so a claim
-- is not planned at each call.
--
-- In each, the CTE fences the LIMIT so that no more rows are updated than asked for, and
-- SKIP LOCKED lets runners claim side by side.

-- first_time: the oldest open jobs. Uses jobs_claim_open_idx or jobs_status_list_idx.
CREATE FUNCTION claim_open_jobs(max_jobs integer, runner text) RETURNS SETOF jobs
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
RETURN QUERY
WITH picked AS (
    SELECT ctid FROM jobs
    WHERE status = 'open'
    ORDER BY id
    LIMIT max_jobs
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'in_queue', runner_id = runner, heartbeat_at = now(), updated_at = now()
WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
RETURNING *;
END
$$;

-- retry: failed jobs that are due and have retries left, longest due first.
-- Uses jobs_claim_retry_idx.
CREATE FUNCTION claim_due_retries(max_jobs integer, runner text) RETURNS SETOF jobs
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
RETURN QUERY
WITH picked AS (
    SELECT ctid FROM jobs
    WHERE status = 'failed' AND run_after <= now() AND attempts <= retry_count
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
