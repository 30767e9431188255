package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

// StatusRow is one secret in `rotator status`.
type StatusRow struct {
	state.Secret
	Interval    string     `json:"interval"`
	AgeSeconds  *int64     `json:"age_seconds,omitempty"`
	Due         *time.Time `json:"due,omitempty"`
	ActiveRun   string     `json:"active_run,omitempty"`
	ActiveStep  string     `json:"active_step,omitempty"`
	InPolicyNow bool       `json:"in_policy"`
	Overdue     bool       `json:"overdue"`
	// ActiveStatus is the unfinished run's status (running, waiting,
	// needs_attention); Held is whether it is held at verify (grace ended
	// with clients on the old credential; both stay valid).
	ActiveStatus string `json:"active_status,omitempty"`
	Held         bool   `json:"held,omitempty"`
	// Interval in seconds (the age bar of the status page).
	IntervalSeconds int64 `json:"interval_seconds"`
}

// Status builds the rows of `rotator status` from a preview, in policy
// order.
func Status(g *daemon.Generation, decs []daemon.Decision, now time.Time) []StatusRow {
	rows := make([]StatusRow, 0, len(decs))
	for _, d := range decs {
		set, _ := g.Settings(d.SecretID)
		r := StatusRow{Secret: d.State, Interval: policy.Duration(set.Interval).String(), InPolicyNow: true,
			IntervalSeconds: int64(set.Interval / time.Second)}
		if sec := d.State; sec.LastSuccessAt != nil {
			age := int64(now.Sub(*sec.LastSuccessAt).Seconds())
			r.AgeSeconds = &age
			r.Overdue = schedule.Overdue(*sec.LastSuccessAt, now, set.Interval)
		}
		if !d.Due.Quarantined {
			at := d.Due.At.UTC()
			r.Due = &at
		}
		if d.Run != nil {
			r.ActiveRun, r.ActiveStep, r.ActiveStatus = d.Run.ID, string(d.Run.Step), string(d.Run.Status)
			r.Held = IsHeld(d.Run)
		}
		rows = append(rows, r)
	}
	return rows
}

// IsHeld reports whether a run is held at verify: its grace ended with
// clients still on the old credential and on_timeout is hold, so both
// credentials stay valid until a person looks (the engine marks it so in
// the run's detail).
func IsHeld(r *state.Run) bool {
	return r != nil && r.Status == state.RunWaiting && strings.HasPrefix(r.Detail, state.HeldDetailPrefix)
}

// WriteStatus renders status rows as a table or JSON.
func WriteStatus(w io.Writer, rows []StatusRow, format string) error {
	sw := NewStatusWriter(w, format)
	if err := sw.Write(rows); err != nil {
		return err
	}
	return sw.Close()
}

// StatusWriter renders status rows as they come, a batch at a time (what
// `rotator status` reads with Generation.PreviewEach): JSON is written as
// it comes, in the form WriteStatus gives; a table is aligned over every
// row, so it is written at Close.
type StatusWriter struct {
	w      io.Writer
	json   bool
	tw     *tabwriter.Writer
	n      int
	failed error
}

// NewStatusWriter starts a table or JSON (format "json").
func NewStatusWriter(w io.Writer, format string) *StatusWriter {
	sw := &StatusWriter{w: w, json: format == "json"}
	if !sw.json {
		sw.tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(sw.tw, "SECRET\tCLASS\tVERSION\tCREDENTIAL\tAGE\tLAST\tNEXT DUE\tSTATUS")
	}
	return sw
}

// Write renders rows.
func (sw *StatusWriter) Write(rows []StatusRow) error {
	if sw.failed != nil {
		return sw.failed
	}
	for _, r := range rows {
		if sw.json {
			b, err := json.MarshalIndent(r, "  ", "  ")
			if err != nil {
				sw.failed = err
				return err
			}
			sep := ",\n  "
			if sw.n == 0 {
				sep = "[\n  "
			}
			if _, err := fmt.Fprintf(sw.w, "%s%s", sep, b); err != nil {
				sw.failed = err
				return err
			}
			sw.n++
			continue
		}
		fmt.Fprintf(sw.tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Class, r.CurrentVersion, statusCred(r), statusAge(r), statusLast(r), statusDue(r), statusOf(r))
		sw.n++
	}
	return nil
}

// Close ends the JSON list, or writes the table.
func (sw *StatusWriter) Close() error {
	if sw.failed != nil {
		return sw.failed
	}
	if !sw.json {
		return sw.tw.Flush()
	}
	end := "\n]\n"
	if sw.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(sw.w, end)
	return err
}

func statusAge(r StatusRow) string {
	if r.AgeSeconds == nil {
		return "never rotated"
	}
	return Age(time.Duration(*r.AgeSeconds) * time.Second)
}

func statusDue(r StatusRow) string {
	if r.Due == nil {
		return "-"
	}
	return r.Due.UTC().Format("2006-01-02 15:04Z")
}

func statusLast(r StatusRow) string {
	if r.LastOutcome == "" {
		return "-"
	}
	return string(r.LastOutcome)
}

func statusCred(r StatusRow) string {
	return rotation.CredentialMeta{Username: r.Current.Username, KeyID: r.Current.KeyID}.String()
}

func statusOf(r StatusRow) string {
	status := string(r.Status)
	if status == "" {
		status = string(state.SecretActive)
	}
	if r.Overdue {
		status += " OVERDUE"
	}
	if r.ActiveRun != "" {
		if r.ActiveStatus == string(state.RunNeedsAttention) {
			status += " NEEDS ATTENTION"
		}
		status += " (run at " + r.ActiveStep + ")"
	}
	return status
}

// Age writes a duration the way status shows ages: 3d, 5h, 12m, 40s.
func Age(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// PlanRow is one secret in `rotator plan`.
type PlanRow struct {
	Secret string     `json:"secret"`
	Class  string     `json:"class"`
	Due    *time.Time `json:"due,omitempty"`
	Local  string     `json:"due_local"`
	Why    string     `json:"why"`
	Steps  []string   `json:"steps,omitempty"`
	Status string     `json:"status,omitempty"`
}

// Plan builds the rows of `rotator plan`, soonest first (quarantined
// secrets last); only secret's when it is not empty.
func Plan(g *daemon.Generation, decs []daemon.Decision, only string) []PlanRow {
	var rows []PlanRow
	for _, d := range decs {
		if only != "" && d.SecretID != only {
			continue
		}
		set, _ := g.Settings(d.SecretID)
		r := PlanRow{Secret: d.SecretID, Class: set.Class, Why: d.Due.String(),
			Steps: append([]string{d.Due.Reason}, d.Due.Steps...), Status: string(d.State.Status)}
		if d.Due.Quarantined {
			r.Local = "never (quarantined)"
		} else {
			at := d.Due.At.UTC()
			r.Due = &at
			loc, err := time.LoadLocation(set.TimeZone)
			if err != nil {
				loc = time.UTC
			}
			r.Local = d.Due.At.In(loc).Format("Mon 2006-01-02 15:04 MST")
		}
		rows = append(rows, r)
	}
	return SortPlan(rows)
}

// SortPlan orders plan rows by due time, the soonest first and the
// secrets never due (quarantined) last, keeping the policy order of
// rows due at one time; it sorts rows in place and returns it.
func SortPlan(rows []PlanRow) []PlanRow {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i].Due, rows[j].Due
		if a == nil || b == nil {
			return b == nil && a != nil
		}
		return a.Before(*b)
	})
	return rows
}

// WritePlan renders plan rows: JSON, a table, or (explain) one secret
// step by step.
func WritePlan(w io.Writer, rows []PlanRow, format string, explain bool) error {
	if format == "json" {
		if rows == nil {
			rows = []PlanRow{}
		}
		return writeJSON(w, rows)
	}
	if explain && len(rows) == 1 {
		r := rows[0]
		fmt.Fprintf(w, "%s (%s) is next due %s\n", r.Secret, r.Class, r.Local)
		for _, s := range r.Steps {
			fmt.Fprintf(w, "  - %s\n", s)
		}
		if r.Status == string(state.SecretQuarantined) {
			fmt.Fprintf(w, "  - it is QUARANTINED: no automatic attempt until `rotator resume --secret %s`\n", r.Secret)
		}
		if r.Status == string(state.SecretDrift) {
			fmt.Fprintf(w, "  - it is in DRIFT: the state database and the stores disagree; nothing runs until `rotator adopt --secret %s`\n", r.Secret)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DUE\tSECRET\tCLASS\tWHY")
	for _, r := range rows {
		why := r.Why
		switch r.Status {
		case string(state.SecretQuarantined):
			why = "QUARANTINED; " + why
		case string(state.SecretDrift):
			why = "DRIFT (rotator adopt); " + why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Local, r.Secret, r.Class, why)
	}
	return tw.Flush()
}

// Decision writes one line saying what `run --due` would do with a secret
// now; rotate and resume are followed by the run's plan.
func Decision(d daemon.Decision) string {
	switch d.Action {
	case daemon.ActionResume:
		return fmt.Sprintf("%s: would resume run %s at step %s", d.SecretID, d.Run.ID, d.Run.Step)
	case daemon.ActionWait:
		return fmt.Sprintf("%s: nothing now: run %s at step %s waits until %s", d.SecretID, d.Run.ID, d.Run.Step, d.Run.WaitUntil.UTC().Format(time.RFC3339))
	case daemon.ActionQuarantined:
		return fmt.Sprintf("%s: nothing: quarantined (no automatic attempt until `rotator resume --secret %s`)", d.SecretID, d.SecretID)
	case daemon.ActionNotDue:
		return fmt.Sprintf("%s: nothing: not due until %s (%s)", d.SecretID, d.Due.At.UTC().Format(time.RFC3339), d.Due.String())
	case daemon.ActionOutsideWindow:
		return fmt.Sprintf("%s: nothing: due since %s but outside its window", d.SecretID, d.Due.At.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s: would rotate: due since %s (%s)", d.SecretID, d.Due.At.UTC().Format(time.RFC3339), d.Due.String())
}

// WriteHistory renders runs (newest first) as a table or JSON.
func WriteHistory(w io.Writer, id string, runs []*state.Run, format string) error {
	if format == "json" {
		if runs == nil {
			runs = []*state.Run{}
		}
		return writeJSON(w, runs)
	}
	if len(runs) == 0 {
		fmt.Fprintf(w, "%s: no runs yet\n", id)
		return nil
	}
	for _, r := range runs {
		end := "…"
		if r.FinishedAt != nil {
			end = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "run %s  %s  %s  version %d  %s -> %s  started %s  took %s\n",
			r.ID, r.Trigger, strings.ToUpper(string(r.Status)), r.Version, metaString(r.Old), metaString(r.New),
			r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), end)
		if r.Detail != "" {
			fmt.Fprintf(w, "  %s\n", r.Detail)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, s := range r.Steps {
			took := "…"
			if s.FinishedAt != nil {
				took = s.FinishedAt.Sub(s.StartedAt).Round(time.Millisecond).String()
			}
			outcome := s.Outcome
			if outcome == "" {
				outcome = "interrupted"
			}
			line := fmt.Sprintf("    %s\t#%d\t%s\t%s\t%s", s.Step, s.Attempt, outcome, took, s.Detail)
			if s.Error != "" {
				line += "\terror: " + s.Error
			}
			fmt.Fprintln(tw, line)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func metaString(m state.Meta) string {
	return rotation.CredentialMeta{Username: m.Username, KeyID: m.KeyID}.String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
