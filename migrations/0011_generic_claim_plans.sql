-- The claims run several times a second per runner. PostgreSQL planned each call anew (a
-- "custom" plan for its arguments): for the claim of every queue, with its skip scan, the
-- planning cost more than the claim itself (1.4 ms against about 0.7 ms measured for ten
-- jobs). Their plans do not depend on the arguments (sorts, bitmap and sequential scans are
-- off inside; each pick walks an index), so one generic plan, made once per connection, is
-- kept.
ALTER FUNCTION claim_open_jobs(integer, text, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION claim_due_retries(integer, text, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION promote_due_jobs(integer) SET plan_cache_mode = force_generic_plan;
