package schedule

import (
	"fmt"
	"time"
)

// History is what is recorded of a secret that decides when it is next
// due. The caller reads it from the state database; Due turns it into the
// one answer that is stored (next_due_at) and that every reader shows.
type History struct {
	// LastSuccess is when the secret last rotated; zero: never.
	LastSuccess time.Time
	// LastFailure is when the failed attempt began, when the secret's
	// last run failed (or was rolled back) and no success came after it;
	// zero otherwise.
	LastFailure time.Time
	// Quarantined: no automatic attempt until a person resumes it.
	Quarantined bool
	// Pinned is a due time that no rule recomputes: the first due time
	// recorded for a never-rotated secret (computed once, from the moment
	// it was first seen) or the "due now" that `rotator resume` records.
	// Zero: none.
	Pinned time.Time
	// Adopted, for a never-rotated secret with adopt_age and no Pinned
	// time, is when the version the stores hold was made; zero: unknown.
	Adopted time.Time
}

// Due is a secret's next due time and how it was arrived at.
type Due struct {
	// At is when the secret is next due; zero when Quarantined.
	At time.Time
	// Quarantined: no automatic attempt at all (`rotator resume` lifts it).
	Quarantined bool
	Explanation
}

// Due computes when the secret is next due from its history, in this
// order of precedence:
//
//  1. Quarantined: never automatically.
//  2. A failed last run: LastFailure + RetryAfter (retry.next_run), moved
//     into the window, plus the jitter.
//  3. A pinned time (a never-rotated secret's first due time, or a
//     resume): that time, as recorded.
//  4. A last success: Next(LastSuccess).
//  5. Never rotated: Next from Adopted when known, else from now. Only this
//     case depends on now: the caller stores the answer and passes it back
//     as Pinned from then on.
//
// The result may lie before now (overdue); a rotation then starts at the
// first tick where Allows(now).
func (r Rule) Due(secretID string, h History, now time.Time) (Due, error) {
	if err := r.Validate(); err != nil {
		return Due{}, err
	}
	loc := r.location()
	switch {
	case h.Quarantined:
		return Due{Quarantined: true, Explanation: Explanation{
			Reason: "quarantined after repeated failures: no automatic attempt until `rotator resume --secret " + secretID + "`"}}, nil
	case !h.LastFailure.IsZero():
		ex := Explanation{Reason: fmt.Sprintf("last run failed (attempt began %s); retry.next_run %s", fmtTime(h.LastFailure.In(loc)), fmtDuration(r.RetryAfter))}
		ex.Base = h.LastFailure.Add(r.RetryAfter).In(loc)
		ex.Reason += " = " + fmtTime(ex.Base)
		at, err := r.place(secretID, ex.Base, &ex)
		if err != nil {
			return Due{}, err
		}
		return Due{At: at.In(loc), Explanation: ex}, nil
	case !h.Pinned.IsZero():
		at := h.Pinned.In(loc)
		why := "due time recorded when the secret was first seen (never rotated)"
		if !h.LastSuccess.IsZero() {
			why = "due time recorded when its quarantine was lifted"
		}
		return Due{At: at, Explanation: Explanation{Base: at, Reason: why + ": " + fmtTime(at)}}, nil
	case !h.LastSuccess.IsZero():
		at, ex, err := r.Next(secretID, h.LastSuccess, now)
		return Due{At: at, Explanation: ex}, err
	case !h.Adopted.IsZero():
		at, ex, err := r.Next(secretID, h.Adopted, now)
		ex.Reason = "never rotated; adopted the age of the published version: " + ex.Reason
		return Due{At: at, Explanation: ex}, err
	}
	at, ex, err := r.Next(secretID, time.Time{}, now)
	return Due{At: at, Explanation: ex}, err
}
