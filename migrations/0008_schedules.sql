-- Cron schedules (connectra/schedules.py) and the jobs they create.
--
-- A schedule is declared in code (`@registry.periodic`, upserted by every runner process
-- at start) or added at run time (CLI, API). Every runner process hosting a first_time runner
-- fires due ticks; exactly one job per tick comes from last_tick_at (moved forward in the
-- transaction that inserts the job, and only forward) and, as a second guard, the unique
-- key of jobs on (schedule_name, schedule_tick_at).
CREATE TABLE schedules (
    name          text        PRIMARY KEY,
    cron          text        NOT NULL,
    timezone      text        NOT NULL DEFAULT 'UTC',
    job_type      text        NOT NULL,
    data          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    queue         text,       -- NULL: the job type's queue
    priority      integer,    -- NULL: the job type's priority
    paused        boolean     NOT NULL DEFAULT false,
    source        text        NOT NULL DEFAULT 'api',
    -- The latest tick fired (or passed over while paused); NULL: none yet, and ticks count
    -- from created_at.
    last_tick_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    CONSTRAINT schedules_source_check CHECK (source IN ('code', 'api')),
    CONSTRAINT schedules_queue_check CHECK (queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    CONSTRAINT schedules_priority_check CHECK (priority BETWEEN -100 AND 100)
);

-- The schedule and tick a job was created for (both NULL for other jobs). No foreign key:
-- removing a schedule leaves its jobs alone.
ALTER TABLE jobs ADD COLUMN schedule_name text;
ALTER TABLE jobs ADD COLUMN schedule_tick_at timestamptz;
ALTER TABLE jobs ADD CONSTRAINT jobs_schedule_tick_check CHECK (
    (schedule_name IS NULL) = (schedule_tick_at IS NULL)
);
CREATE UNIQUE INDEX jobs_schedule_tick_key ON jobs (schedule_name, schedule_tick_at)
    WHERE schedule_name IS NOT NULL;
