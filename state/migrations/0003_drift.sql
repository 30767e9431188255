-- A secret whose state database and stores disagree in a way rotator does
-- not resolve by itself is in drift: no automatic run touches it until a
-- person runs `rotator adopt`.
ALTER TABLE rotator_secrets DROP CONSTRAINT rotator_secrets_status_check;
ALTER TABLE rotator_secrets ADD CONSTRAINT rotator_secrets_status_check
    CHECK (status IN ('active', 'quarantined', 'drift'));

-- A failed run whose compensation is not complete (a store could not be
-- put back) stays active as needs_attention: later ticks continue it.
ALTER TABLE rotator_runs DROP CONSTRAINT rotator_runs_status_check;
ALTER TABLE rotator_runs ADD CONSTRAINT rotator_runs_status_check
    CHECK (status IN ('running', 'waiting', 'succeeded', 'failed', 'rolled_back', 'needs_attention'));
DROP INDEX rotator_runs_one_active;
CREATE UNIQUE INDEX rotator_runs_one_active ON rotator_runs (secret_id) WHERE status IN ('running', 'waiting', 'needs_attention');
DROP INDEX rotator_runs_waiting;
CREATE INDEX rotator_runs_waiting ON rotator_runs (wait_until) WHERE status IN ('running', 'waiting', 'needs_attention');
