-- Jobs (app/belt/jobs.py): work that outlives the request, in the same file as the write that
-- asked for it, so enqueueing commits or rolls back with that write (a transactional outbox).
--
-- state: queued (waiting for run_at; a retry waits here too), running (run_at is then the end
-- of the worker's lease: an expired lease makes the job claimable again), done, dead (every
-- attempt failed; last_error says why; never deleted by the belt, only by a person).
CREATE TABLE _orion_jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL DEFAULT 'null',   -- JSON
    tenant       TEXT,                              -- ctx.tenant of the enqueuer: the handler's ctx
    state        TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),
    run_at       REAL    NOT NULL,                  -- epoch seconds
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    unique_key   TEXT,
    worker       TEXT,                              -- who holds (or last held) the lease
    progress     REAL,                              -- 0..1, set by jobs.progress()
    result       TEXT,                              -- JSON of the handler's return value
    last_error   TEXT,
    created_at   REAL    NOT NULL,
    started_at   REAL,
    updated_at   REAL    NOT NULL,
    finished_at  REAL
);
-- What a worker claims: the oldest due job, queued or running with an expired lease.
CREATE INDEX _orion_jobs_due ON _orion_jobs (run_at) WHERE state IN ('queued', 'running');
CREATE INDEX _orion_jobs_state ON _orion_jobs (state, updated_at);
-- The admin panel notices a change made by another process (a worker) from max(updated_at).
CREATE INDEX _orion_jobs_updated ON _orion_jobs (updated_at);
-- Concurrent duplicates collapse: one live (queued or running) job per unique key.
CREATE UNIQUE INDEX _orion_jobs_unique ON _orion_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');

-- Periodic jobs: when each schedule fires next. The compare-and-set on next_at makes two
-- processes sharing the file fire a due schedule once.
CREATE TABLE _orion_schedules (
    name    TEXT PRIMARY KEY,
    spec    TEXT NOT NULL,                          -- the cron expression or "every <seconds>"
    next_at REAL NOT NULL,
    last_at REAL
);

-- Durable workflows (app/belt/workflows.py): a run, and the recorded result of each finished
-- step, so a crash resumes at the first unfinished step without redoing the finished ones.
CREATE TABLE _orion_workflows (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    tenant      TEXT,
    input       TEXT NOT NULL DEFAULT 'null',       -- JSON
    state       TEXT NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'waiting', 'done', 'failed', 'compensated')),
    step        TEXT,                               -- the step running or waited for
    wake_at     REAL,                               -- a sleeping run wakes then
    error       TEXT,
    unique_key  TEXT UNIQUE,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX _orion_workflows_state ON _orion_workflows (state, updated_at);
CREATE TABLE _orion_workflow_steps (
    workflow_id INTEGER NOT NULL REFERENCES _orion_workflows (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    result      TEXT    NOT NULL DEFAULT 'null',    -- JSON
    finished_at REAL    NOT NULL,
    PRIMARY KEY (workflow_id, name)
);
