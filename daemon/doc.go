// Package daemon runs rotations on schedule: it turns a loaded policies
// file into a Generation (compiled schedules, secrets indexed by id),
// records due times (Sync), says what a tick would do (Preview), and runs
// the long-lived loop of `rotator daemon`: cron-driven ticks, policy
// reloads, /healthz, /readyz and /metrics. `rotator run --due` is one Sync
// and one tick of the same Generation.
//
// # Targets are built for a use, not kept
//
// A Generation keeps no engine target. A tick builds the targets of the
// secrets it works on (Generation.Lookup) and releases them when its runs
// have returned; a check builds one (Generation.Acquire) and releases it
// when it ends. What secrets share (stores, one admin pool per Postgres
// server) is built once per generation by the Builder and closed with it.
// So memory follows the work in progress, not the number of secrets: a
// round of checks over 100,000 secrets holds at most --concurrency targets
// (at start it used to build and keep all of them, ~213 MB). A run resumed
// on a later tick gets a freshly built rotator, as after a restart: every
// step resumes from the journal.
//
// # Due times
//
// A secret's due time has one owner, schedule.Rule.Due, and one column,
// rotator_secrets.next_due_at. Its inputs are read from the secret's state
// row by HistoryOf: the last success, a failed last run (last_attempt_at,
// when the failed attempt began, with retry.next_run), the quarantine, and
// the recorded time of a never-rotated or resumed secret (kept, not
// recomputed). Who records it:
//
//   - the engine, after a success (Target.NextDue) and after a failure
//     (Target.RetryAt, from the failed run's started_at, which is the same
//     instant as last_attempt_at), as wired by Schedule;
//   - Sync, at every `run --due` and every daemon (re)load, for every
//     secret that is not quarantined: the same function over the same
//     facts, so a pending retry keeps its time and a changed interval,
//     window or retry.next_run takes effect.
//
// The engine records the success with its own clock and the state with
// the database's, so Sync may move a due time by the milliseconds between
// the two; nothing else changes it. status, plan and `run --due --dry-run`
// show Preview: the same function over the same facts, which is the stored
// column after any Sync with the same policies.
//
// # What a tick does
//
// Preview decides, per secret and in this order, as rotation.Engine.Tick
// with IfDue does: an unfinished run is resumed (or waits until its
// wait_until); a quarantined secret is left alone; a secret due later is
// not touched; a due secret outside its window waits for the window; the
// rest are rotated.
//
// # Waiting runs wake at their wait_until
//
// A run that must wait (verify until its soonest check can change its
// answer, the monitor window, a retire or compensation tried again) records
// wait_until and returns its worker. After every tick the daemon reads the
// earliest wait_until of any unfinished run (state.DB.NextWait, one indexed
// query; runs left by a CronJob or `run --no-wait` included) and arms one
// timer for it; when it fires, a tick runs (after a tick in progress, never
// skipped), so a 1s delay check costs about 1s, not a cron interval. A
// CronJob (`run --due --no-wait`) has no timer: it continues waiting runs
// at its next firing.
//
// # Published-credential checks
//
// Run also checks what every store publishes as current (rotation.Checker,
// as `rotator check` does; safety rule 6): every secret right after start,
// then once per defaults.check.interval at the secret's own offset within
// it (schedule.Jitter of its id: spread, and the same moment on every
// replica), and at once after each of its runs ends or is held. At most
// --concurrency checks run at a time, each with a target built for it;
// they are read-only and stop at once on shutdown. One Checker lives for the daemon's lifetime, so a broken
// credential is announced once. A secret removed by a reload loses its
// rotator_published_credential_ok and rotator_published_stores_agree
// gauges.
//
// # Metrics
//
// /metrics serves the registry through a gatherer (metrics.go). Series
// labelled by secret are on with Config.PerSecretMetrics on, and with auto
// (the default) while the policies hold at most PerSecretAutoMax secrets;
// the daemon sets the engine's mode (rotation.Metrics.SetPerSecret) at
// every (re)load. The aggregates are always served: the secrets managed,
// overdue (a binary search over sorted deadlines at each scrape),
// quarantined and in drift, the runs needing attention and held, the failing
// published credentials and disagreeing stores, and, without per-secret
// series, rotator_rotations_total summed by class and outcome. The
// per-secret state is read every MetricsRefresh: three counts when nothing
// changed (state.DB.SecretsChanged), a narrow summary of every row when
// something did.
//
// # Status page
//
// SetPage mounts the status page (daemon/statuspage) before Run: on its
// own listener, or at / of the --listen address beside the probes and
// /metrics. LastCheck gives the page each secret's latest
// published-credential check (memory only, kept only when the page is
// served).
//
// # Reloads
//
// SIGHUP (and, with a watch interval, a changed file) loads the policies
// again; a bad file is rejected and the old generation stays in force. A
// new generation syncs the due times before it is swapped in (skipped
// when the state database was last synced from the same file content by
// the same build: Generation.Sync, SyncKey); the old one is closed once
// the ticks and checks using it end, so a run in flight keeps its rotator
// and stores until it returns. Ticks are exclusive within a process;
// leases make them exclusive across processes.
//
// A reload holds two generations at once. To bound its peak memory it
// first returns the idle heap to the OS, runs with GOGC at
// ReloadGCPercent until the old generation is closed (then restores the
// setting in force and returns memory again), and the check loop and the
// metrics refer to generations weakly, so nothing but the ticks and checks
// in flight keeps a replaced one alive.
//
// A reload of a large file that would reuse less than half of the
// policies in force (the header changed, every line moved) is lean
// (lean.go): it waits for the ticks, checks, metrics refreshes and status
// page reads in flight, makes new ones wait, drops the old generation
// (keeping only its text, compressed), then loads the file; a refused
// file, build or sync puts the old policies back, parsed again from that
// text. /readyz stays 200 meanwhile. A tick that comes during it is
// deferred, not skipped: one tick runs as soon as the reload ends.
//
// # Shutdown
//
// SIGTERM ends Run's context: no new tick starts, the checks and metrics
// stop, and running steps get Config.Shutdown to finish before their
// context is cancelled (they resume on the next start). A reload in
// progress is stopped first (its load abandoned, its sync's statement
// cancelled; a lean reload's wait for the runs in flight given up, the
// old generation back in force), and the log says where it stopped and
// which policies are in force for the drain (lean.go).
package daemon
