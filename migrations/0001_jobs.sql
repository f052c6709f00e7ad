-- The jobs table: the seed's fields plus what the runners need to own a job.
CREATE TABLE jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid            uuid        NOT NULL DEFAULT gen_random_uuid(),
    job_type        text        NOT NULL,
    data            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status          text        NOT NULL DEFAULT 'open',
    job_response    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    retry_count     integer     NOT NULL DEFAULT 0,
    retry_interval  integer     NOT NULL DEFAULT 30,
    run_after       timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    runner_id       text,
    heartbeat_at    timestamptz,
    started_at      timestamptz,
    completed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_uuid_key UNIQUE (uuid),
    CONSTRAINT jobs_status_check CHECK (status IN (
        'open', 'in_queue', 'processing', 'completed',
        'failed', 'retry_in_queued', 'retrying'
    )),
    CONSTRAINT jobs_retry_count_check CHECK (retry_count >= 0),
    CONSTRAINT jobs_retry_interval_check CHECK (retry_interval >= 0),
    CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    -- A queued or running job always names the runner that holds it.
    CONSTRAINT jobs_held_has_runner CHECK (
        (status IN ('in_queue', 'processing', 'retry_in_queued', 'retrying')) = (runner_id IS NOT NULL)
    )
);

-- Claim paths: each partial index holds only the rows its runner may take, so the claim
-- stays fast however many finished rows the table holds.
CREATE INDEX jobs_claim_open_idx ON jobs (id) WHERE status = 'open';
CREATE INDEX jobs_claim_retry_idx ON jobs (run_after, id)
    WHERE status = 'failed' AND run_after IS NOT NULL;

-- Jobs a runner holds, for hand-back on shutdown and rescue.
CREATE INDEX jobs_runner_idx ON jobs (runner_id) WHERE runner_id IS NOT NULL;

-- Listing: newest first, optionally by status or job type.
CREATE INDEX jobs_status_list_idx ON jobs (status, id DESC);
CREATE INDEX jobs_type_list_idx ON jobs (job_type, id DESC);

-- The table is hot (every job is updated several times): vacuum it early.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
