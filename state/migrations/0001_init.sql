-- rotator state, version 1.
-- No plaintext secret is ever stored here: credentials are described by
-- their metadata (username, key id, fingerprint); material a run must keep
-- across a crash is sealed (AES-256-GCM, run id as associated data).

CREATE TABLE rotator_secrets (
    id                   text PRIMARY KEY,
    class                text NOT NULL,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'quarantined')),
    current_version      bigint NOT NULL DEFAULT 0,
    current_run_id       text,
    current_meta         jsonb NOT NULL DEFAULT '{}',
    previous_version     bigint NOT NULL DEFAULT 0,
    previous_run_id      text,
    previous_meta        jsonb NOT NULL DEFAULT '{}',
    last_success_at      timestamptz,
    last_attempt_at      timestamptz,
    last_outcome         text,
    last_error           text,
    consecutive_failures int NOT NULL DEFAULT 0,
    next_due_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rotator_secrets_due ON rotator_secrets (next_due_at) WHERE status = 'active';

CREATE TABLE rotator_runs (
    id              text PRIMARY KEY,
    secret_id       text NOT NULL REFERENCES rotator_secrets (id) ON DELETE CASCADE,
    trigger         text NOT NULL,
    attempt         int NOT NULL DEFAULT 1,
    status          text NOT NULL CHECK (status IN ('running', 'waiting', 'succeeded', 'failed', 'rolled_back')),
    step            text NOT NULL,
    version         bigint NOT NULL,
    old_meta        jsonb NOT NULL DEFAULT '{}',
    new_meta        jsonb NOT NULL DEFAULT '{}',
    sealed          bytea,
    holder          text,
    published_at    timestamptz,
    retired_at      timestamptz,
    verify_deadline timestamptz,
    monitor_until   timestamptz,
    wait_until      timestamptz,
    detail          text,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

-- At most one unfinished run per secret: two processes cannot start two
-- rotations of the same secret even if their leases were to overlap.
CREATE UNIQUE INDEX rotator_runs_one_active ON rotator_runs (secret_id) WHERE status IN ('running', 'waiting');
CREATE INDEX rotator_runs_secret ON rotator_runs (secret_id, started_at DESC);
CREATE INDEX rotator_runs_waiting ON rotator_runs (wait_until) WHERE status IN ('running', 'waiting');

-- The journal: a row is written (intent) before each external action and
-- completed (outcome) after it.
CREATE TABLE rotator_steps (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES rotator_runs (id) ON DELETE CASCADE,
    step        text NOT NULL,
    attempt     int NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text,
    error       text,
    detail      text
);

CREATE INDEX rotator_steps_run ON rotator_steps (run_id, id);

-- Append-only audit log.
CREATE TABLE rotator_audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    secret_id text NOT NULL,
    run_id    text,
    actor     text NOT NULL,
    action    text NOT NULL,
    detail    text
);

CREATE FUNCTION rotator_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rotator_audit is append-only';
END $$;

CREATE TRIGGER rotator_audit_no_change BEFORE UPDATE OR DELETE ON rotator_audit
    FOR EACH ROW EXECUTE FUNCTION rotator_audit_append_only();

-- One lease per secret, with a fencing token that grows on every takeover.
CREATE TABLE rotator_leases (
    secret_id  text PRIMARY KEY,
    holder     text NOT NULL,
    token      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
