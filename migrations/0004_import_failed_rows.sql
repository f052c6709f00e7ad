-- Resumable imports: the bad rows of every committed batch, kept until the import finishes.
-- An attempt that fails keeps them, so the failed-rows CSV written at the end of the attempt
-- that completes lists the bad rows of every attempt. `csv` is the row's line of that file
-- (bytea: a bad row may hold a NUL character, which text and jsonb cannot).
CREATE TABLE import_failed_rows (
    job_id  bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    line    bigint NOT NULL,
    csv     bytea  NOT NULL,
    PRIMARY KEY (job_id, line)
);
