-- Open notification episodes (one per secret and sink), so that a failure
-- is announced once and its resolution posted once even when every tick is
-- a new process (a Kubernetes CronJob) or the daemon restarts. Holds what
-- was posted (kinds, the Slack message's channel and ts), never a secret.
CREATE TABLE rotator_notify_episodes (
    secret_id  text NOT NULL,
    sink       text NOT NULL,
    episode    jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (secret_id, sink)
);
