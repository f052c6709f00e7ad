-- The X-Request-ID of the API request that created a job, for following it through the logs
-- of every attempt. Set once at create; never indexed (looked up through the logs).
ALTER TABLE jobs ADD COLUMN request_id text;
