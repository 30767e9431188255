package state

// The values rotator stores, as types. Each kind of value has one type and
// its constants live here, once; the engine, the CLI and the notifier use
// the constants, never the strings. SQL in this package passes them as
// parameters.

// RunStatus is where a run stands (rotator_runs.status). A secret's
// last_outcome holds the status its last finished run ended with.
type RunStatus string

// Run statuses. Running, Waiting and NeedsAttention are unfinished
// (Run.Active).
const (
	RunRunning    RunStatus = "running"
	RunWaiting    RunStatus = "waiting"
	RunSucceeded  RunStatus = "succeeded"
	RunFailed     RunStatus = "failed"
	RunRolledBack RunStatus = "rolled_back"
	// RunNeedsAttention: the run failed and its compensation is not
	// complete (a store could not be put back); later ticks continue it.
	RunNeedsAttention RunStatus = "needs_attention"
)

// HeldDetailPrefix starts the detail of a held run: waiting at verify after
// its grace ended with clients on the old credential (on_timeout hold;
// both credentials stay valid). The engine writes it; status, the status
// page and the daemon's rotator_runs_held read it.
const HeldDetailPrefix = "held:"

// Statuses a rotation.Result reports when Run started no run. They are
// never stored.
const (
	// RunNotDue: the secret is not due, or outside its window.
	RunNotDue RunStatus = "not_due"
	// RunQuarantined: the secret is quarantined; only a manual run or
	// `rotator resume` starts one.
	RunQuarantined RunStatus = "quarantined"
	// RunDrift: the secret is in drift (its state database and its stores
	// disagree); nothing was done.
	RunDrift RunStatus = "drift"
)

// Step names a run's step (rotator_runs.step) or a journal entry
// (rotator_steps.step).
type Step string

// Steps of a rotation, in order; Stage and Rollback are journaled actions
// (staging at the stores during generate, undoing a version).
const (
	StepGenerate Step = "generate"
	StepStage    Step = "stage"
	StepPublish  Step = "publish"
	StepVerify   Step = "verify"
	StepRetire   Step = "retire"
	StepMonitor  Step = "monitor"
	StepDone     Step = "done"
	StepRollback Step = "rollback"
	// StepCompensate puts the stores back and discards the new credential
	// of a run that failed before its version was published everywhere.
	StepCompensate Step = "compensate"
	// StepObserve is journaled when observing the stores changed what a
	// run starts from (adopted) or ended a stale run (superseded).
	StepObserve Step = "observe"
)

// Outcome is how a journaled step ended (rotator_steps.outcome).
type Outcome string

// Step outcomes.
const (
	OutcomeOK     Outcome = "ok"
	OutcomeFailed Outcome = "failed"
	// OutcomeTimeout: verify's grace ended and on_timeout is proceed.
	OutcomeTimeout Outcome = "timeout"
	// OutcomeHeld: verify's grace ended and the run is held.
	OutcomeHeld Outcome = "held"
	// OutcomeAdopted: the run starts from what the stores publish, not
	// from what the state database recorded.
	OutcomeAdopted Outcome = "adopted"
	// OutcomeSuperseded: the stores publish neither the run's version nor
	// the one it replaced; the run was ended without any action.
	OutcomeSuperseded Outcome = "superseded"
)

// Trigger records why a run started (rotator_runs.trigger).
type Trigger string

// Triggers.
const (
	TriggerManual   Trigger = "manual"
	TriggerSchedule Trigger = "schedule"
	TriggerRollback Trigger = "rollback"
)

// SecretStatus says whether automatic attempts run (rotator_secrets.status).
type SecretStatus string

// Secret statuses.
const (
	SecretActive SecretStatus = "active"
	// SecretQuarantined: too many consecutive failed runs; no automatic
	// attempt until a run succeeds or `rotator resume`.
	SecretQuarantined SecretStatus = "quarantined"
	// SecretDrift: the state database and the stores disagree; nothing
	// touches the secret until `rotator adopt`.
	SecretDrift SecretStatus = "drift"
)

// SQL fragments built from the constants. They are spliced into the SQL
// text (not passed as parameters) so that the partial indexes, whose
// predicates name these values, serve the queries.
const (
	// activeRunSQL selects unfinished runs (rotator_runs_one_active,
	// rotator_runs_waiting).
	activeRunSQL = `status IN ('` + string(RunRunning) + `','` + string(RunWaiting) + `','` + string(RunNeedsAttention) + `')`
	// activeSecretSQL selects secrets that take automatic attempts
	// (rotator_secrets_due).
	activeSecretSQL = `status = '` + string(SecretActive) + `'`
)
