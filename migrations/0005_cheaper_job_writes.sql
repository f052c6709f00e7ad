-- Runners now name the jobs they heartbeat, start, complete and hand back by id (primary
-- key), so no statement looks jobs up by runner any more. The index on runner_id only cost
-- two index entries per job and, while a busy runner's dead entries waited for vacuum,
-- made the planner walk them on every write of that runner.
DROP INDEX jobs_runner_idx;

-- New jobs are announced by the code that creates them, after the commit, one NOTIFY for
-- many concurrent creates (connectra/db/announcer.py). A NOTIFY inside each insert made
-- PostgreSQL serialise the commits of all creating transactions. Status changes (retries
-- falling due, cancel requests, manual retries) are rare and keep their trigger.
DROP TRIGGER jobs_notify_insert ON jobs;
