package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rotator/rotator/state"
)

// Plan lists the steps a run of t would take now, touching nothing (it
// reads the state database only). It is what `rotator run --dry-run`
// prints.
//
// With no state database (DB nil) it plans a first rotation.
func (e *Engine) Plan(ctx context.Context, t Target) ([]string, error) {
	var sec state.Secret
	var active *state.Run
	if e.DB != nil {
		var err error
		sec, err = e.DB.Secret(ctx, t.ID)
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return nil, err
		}
		if active, err = e.DB.ActiveRun(ctx, t.ID); err != nil {
			return nil, err
		}
	}
	var lines []string
	from := state.StepGenerate
	version := sec.CurrentVersion + 1
	old := toMeta(sec.Current)
	if active != nil {
		lines = append(lines, fmt.Sprintf("resume run %s (started %s by %s) at step %s: %s",
			active.ID, active.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), active.Holder, active.Step, active.Detail))
		from, version, old = active.Step, active.Version, toMeta(active.Old)
	}
	oldName := old.String()
	if old.IsZero() {
		oldName = "the credential in use (found at the target)"
	}
	var stores []string
	for _, p := range t.Publish {
		stores = append(stores, p.String())
	}
	checks := []string{}
	if !old.IsZero() {
		checks = append(checks, "no client left on "+old.String()+" (where the target can tell)")
	}
	for _, c := range t.Checks {
		checks = append(checks, c.Name())
	}
	all := []struct {
		step state.Step
		text string
	}{
		{state.StepGenerate, fmt.Sprintf("generate: create version %d beside %s at the target and test it; stage it in %s", version, oldName, strings.Join(stores, ", "))},
		{state.StepPublish, fmt.Sprintf("publish: make version %d current in %s, keeping the previous version readable", version, strings.Join(stores, ", "))},
		{state.StepVerify, fmt.Sprintf("verify: wait up to %s for: %s; then %s", t.Grace, strings.Join(checks, ", "), map[bool]string{true: "proceed anyway", false: "hold (both credentials stay valid)"}[t.OnTimeout == "proceed"])},
		{state.StepRetire, fmt.Sprintf("retire: disable %s%s", oldName, map[bool]string{true: " and end its sessions", false: ""}[t.Terminate])},
		{state.StepMonitor, fmt.Sprintf("monitor: re-test the new credential for %s; roll back if it fails", t.Monitor)},
	}
	on := false
	for _, s := range all {
		if s.step == from {
			on = true
		}
		if on {
			lines = append(lines, s.text)
		}
	}
	lines = append(lines, fmt.Sprintf("each external action is tried up to %d times", t.Retry.normalized().Attempts))
	return lines, nil
}
