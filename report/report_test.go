package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/report"
	"github.com/rotator/rotator/state"
)

// plan shows which secrets nothing will rotate and what lifts that: a
// quarantined secret (`rotator resume`) and one in drift (`rotator adopt`).
func TestPlanShowsQuarantineAndDrift(t *testing.T) {
	t.Parallel()
	rows := []report.PlanRow{
		{Secret: "db/a", Class: "database", Local: "2027-01-01 00:00", Why: "interval", Status: "active"},
		{Secret: "db/b", Class: "database", Local: "never (quarantined)", Why: "3 failed runs", Status: "quarantined"},
		{Secret: "db/c", Class: "database", Local: "2027-01-01 00:00", Why: "interval", Status: "drift"},
	}
	var table bytes.Buffer
	require.NoError(t, report.WritePlan(&table, rows, "table", false))
	require.Contains(t, table.String(), "QUARANTINED; 3 failed runs")
	require.Contains(t, table.String(), "DRIFT (rotator adopt); interval")
	require.NotContains(t, table.String(), "DRIFT (rotator adopt); 3 failed runs")

	var one bytes.Buffer
	require.NoError(t, report.WritePlan(&one, rows[2:], "table", true))
	require.Contains(t, one.String(), "nothing runs until `rotator adopt --secret db/c`")
}

// The status page's condition of a secret: the most urgent fact wins, and
// the ones that need a person rank before the ones that do not.
func TestConditionOf(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	for _, tc := range []struct {
		name   string
		row    report.StatusRow
		broken bool
		want   report.Condition
	}{
		{"healthy", report.StatusRow{Due: &future}, false, report.CondOK},
		{"due", report.StatusRow{Due: &past}, false, report.CondDue},
		{"running", report.StatusRow{ActiveRun: "r1", ActiveStatus: "running", Due: &past}, false, report.CondRunning},
		{"failed, retry pending", report.StatusRow{Secret: state.Secret{LastOutcome: state.RunFailed}, Due: &future}, false, report.CondFailed},
		{"overdue beats failed", report.StatusRow{Secret: state.Secret{LastOutcome: state.RunFailed}, Overdue: true}, false, report.CondOverdue},
		{"held", report.StatusRow{ActiveRun: "r1", ActiveStatus: "waiting", Held: true}, false, report.CondHeld},
		{"quarantined", report.StatusRow{Secret: state.Secret{Status: state.SecretQuarantined}, Overdue: true}, false, report.CondQuarantined},
		{"needs attention", report.StatusRow{Secret: state.Secret{Status: state.SecretQuarantined}, ActiveRun: "r1", ActiveStatus: "needs_attention"}, false, report.CondNeedsAttention},
		{"drift", report.StatusRow{Secret: state.Secret{Status: state.SecretDrift}, ActiveRun: "r1", ActiveStatus: "needs_attention"}, false, report.CondDrift},
		{"broken beats everything", report.StatusRow{Secret: state.Secret{Status: state.SecretDrift}}, true, report.CondBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, report.ConditionOf(tc.row, tc.broken, now))
		})
	}
	for i, c := range report.Conditions {
		require.Equal(t, i, c.Rank())
	}
	require.True(t, report.CondFailed.NeedsPerson())
	require.False(t, report.CondRunning.NeedsPerson())
	require.False(t, report.CondOK.NeedsPerson())
}

// A run is held when verify's grace ended and on_timeout is hold: the
// engine says so at the start of the run's detail.
func TestIsHeld(t *testing.T) {
	t.Parallel()
	require.True(t, report.IsHeld(&state.Run{Status: state.RunWaiting, Detail: "held: grace ended with clients on the old credential; both stay valid: x"}))
	require.False(t, report.IsHeld(&state.Run{Status: state.RunWaiting, Detail: "waiting for clients: x"}))
	require.False(t, report.IsHeld(&state.Run{Status: state.RunFailed, Detail: "held: x"}))
	require.False(t, report.IsHeld(nil))
}

// A StatusWriter given rows in batches writes what one WriteStatus of all
// of them writes: JSON as encoding/json indents the list, and one table
// aligned over every row.
func TestStatusWriterInBatches(t *testing.T) {
	age := int64(90000)
	due := time.Date(2026, 12, 1, 3, 4, 0, 0, time.UTC)
	var rows []report.StatusRow
	for i := range 7 {
		r := report.StatusRow{Interval: "30d", IntervalSeconds: 30 * 86400}
		r.ID, r.Class, r.CurrentVersion = fmt.Sprintf("db/<s%0*d>", i+1, i), "database", int64(i)
		if i%2 == 0 {
			r.AgeSeconds, r.Due = &age, &due
			r.ActiveRun, r.ActiveStep, r.ActiveStatus = "run-1", "verify", string(state.RunNeedsAttention)
		}
		rows = append(rows, r)
	}
	for _, format := range []string{"json", "table"} {
		var whole, batched strings.Builder
		require.NoError(t, report.WriteStatus(&whole, rows, format))
		sw := report.NewStatusWriter(&batched, format)
		require.NoError(t, sw.Write(rows[:3]))
		require.NoError(t, sw.Write(nil))
		require.NoError(t, sw.Write(rows[3:]))
		require.NoError(t, sw.Close())
		require.Equal(t, whole.String(), batched.String(), format)
		if format == "json" {
			want, err := json.MarshalIndent(rows, "", "  ")
			require.NoError(t, err)
			require.Equal(t, string(want)+"\n", whole.String(), "what encoding/json writes")
			var back []report.StatusRow
			require.NoError(t, json.Unmarshal([]byte(whole.String()), &back))
			require.Len(t, back, 7)
		} else {
			lines := strings.Split(strings.TrimSpace(whole.String()), "\n")
			require.Len(t, lines, 8)
			require.Equal(t, strings.Index(lines[0], "CLASS"), strings.Index(lines[7], "database"), "one alignment over every batch")
		}
	}
	var empty strings.Builder
	require.NoError(t, report.WriteStatus(&empty, []report.StatusRow{}, "json"))
	require.Equal(t, "[]\n", empty.String())
}
