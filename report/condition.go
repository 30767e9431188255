package report

import (
	"time"

	"github.com/rotator/rotator/state"
)

// Condition is what the status page highlights for a secret: one word a
// person can act on. Conditions are ordered by how much they need a
// person (Rank): a broken published credential first, a healthy secret
// last.
type Condition string

// Conditions, from the one that most needs a person to the one that
// needs nobody.
const (
	// CondBroken: a store publishes a credential that does not work at the
	// target, or the stores disagree (the last published-credential check).
	CondBroken Condition = "broken"
	// CondDrift: the state database and the stores disagree; nothing runs
	// until `rotator adopt`.
	CondDrift Condition = "drift"
	// CondNeedsAttention: a run failed and a store could not be put back.
	CondNeedsAttention Condition = "needs_attention"
	// CondQuarantined: too many failed runs; no automatic attempt until
	// `rotator resume`.
	CondQuarantined Condition = "quarantined"
	// CondHeld: verify's grace ended with clients on the old credential.
	CondHeld Condition = "held"
	// CondOverdue: older than 1.1 × its interval.
	CondOverdue Condition = "overdue"
	// CondFailed: the last run failed (or rolled back); a retry is due.
	CondFailed Condition = "failed"
	// CondRunning: a run is under way (running, or waiting for clients or
	// the monitor window).
	CondRunning Condition = "running"
	// CondDue: due now; the next tick rotates it.
	CondDue Condition = "due"
	// CondOK: nothing to do until it is due.
	CondOK Condition = "ok"
)

// Conditions lists every condition in Rank order.
var Conditions = []Condition{CondBroken, CondDrift, CondNeedsAttention, CondQuarantined, CondHeld,
	CondOverdue, CondFailed, CondRunning, CondDue, CondOK}

// Rank orders conditions: 0 needs a person most.
func (c Condition) Rank() int {
	for i, x := range Conditions {
		if x == c {
			return i
		}
	}
	return len(Conditions)
}

// NeedsPerson reports whether the condition asks for a person (every
// condition ranked before running).
func (c Condition) NeedsPerson() bool { return c.Rank() < CondRunning.Rank() }

// ConditionOf is a status row's condition at now; broken is whether the
// last published-credential check of the secret found a broken credential
// or disagreeing stores.
func ConditionOf(r StatusRow, broken bool, now time.Time) Condition {
	switch {
	case broken:
		return CondBroken
	case r.Status == state.SecretDrift:
		return CondDrift
	case r.ActiveStatus == string(state.RunNeedsAttention):
		return CondNeedsAttention
	case r.Status == state.SecretQuarantined:
		return CondQuarantined
	case r.Held:
		return CondHeld
	case r.Overdue:
		return CondOverdue
	case r.ActiveRun != "":
		return CondRunning
	case r.LastOutcome == state.RunFailed || r.LastOutcome == state.RunRolledBack:
		return CondFailed
	case r.Due != nil && !r.Due.After(now):
		return CondDue
	}
	return CondOK
}
