-- Job control: cancellation, final failure, leases (heartbeats), checkpoints, idempotency keys.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'open', 'in_queue', 'processing', 'completed',
    'failed', 'retry_in_queued', 'retrying', 'failed_final', 'aborted'
));

-- Set when a user asks to cancel a running job; the runner holding it stops it.
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;
-- Where a resumable job (an import) got to; survives the attempt that wrote it.
ALTER TABLE jobs ADD COLUMN checkpoint jsonb;
-- How often a job was taken back from a runner that stopped heartbeating.
ALTER TABLE jobs ADD COLUMN rescue_count integer NOT NULL DEFAULT 0;

-- Rescue: held jobs by heartbeat age.
CREATE INDEX jobs_heartbeat_idx ON jobs (heartbeat_at)
    WHERE status IN ('in_queue', 'processing', 'retry_in_queued', 'retrying');

-- TTL cleanup: finished jobs by the time they finished.
CREATE INDEX jobs_finished_idx ON jobs (completed_at)
    WHERE status IN ('completed', 'failed_final', 'aborted');

-- Idempotency-Key on create: one row per key, pointing at the job it created.
CREATE TABLE job_idempotency_keys (
    key          text        PRIMARY KEY,
    fingerprint  text        NOT NULL,
    job_id       bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX job_idempotency_keys_expires_idx ON job_idempotency_keys (expires_at);

-- Instant pickup: every new open job, and every job that becomes due for a retry or is
-- asked to cancel, is announced on channel 'connectra_jobs'. Runners also poll, so a lost
-- notification costs at most one tick.
CREATE FUNCTION connectra_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('connectra_jobs', NEW.status);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.status = 'open')
    EXECUTE FUNCTION connectra_jobs_notify();

CREATE TRIGGER jobs_notify_update AFTER UPDATE OF status, cancel_requested_at ON jobs
    FOR EACH ROW WHEN (
        (NEW.status IN ('open', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
        OR (NEW.cancel_requested_at IS NOT NULL AND OLD.cancel_requested_at IS NULL)
    )
    EXECUTE FUNCTION connectra_jobs_notify();
