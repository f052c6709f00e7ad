-- Runner presence: one row per runner (not per job), so that a deployment can tell whether any
-- runner is alive even when every runner is idle and holds no job. A runner upserts its row
-- when it starts and after every heartbeat round (one small write every
-- HEARTBEAT_INTERVAL_SECONDS; last_seen_at is not indexed, so the update is HOT), deletes it
-- when it stops, and the cleaner deletes rows not seen for a day (runners that died).
-- The table stays small: the API's /readyz and /metrics scan it.
CREATE TABLE runners (
    id                  text        PRIMARY KEY,
    kind                text        NOT NULL,
    queues              text[],     -- NULL: every queue
    host                text        NOT NULL,
    pid                 integer     NOT NULL,
    -- The runner is live while its last round is younger than twice this.
    heartbeat_interval  interval    NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now()
);
