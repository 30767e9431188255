package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
)

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade rotator's state schema in Postgres",
		Long: `migrate applies the state schema embedded in this binary to the database named
by DATABASE_URL. It is idempotent, safe to run from several processes at once,
and refuses to touch a schema written by a newer rotator.`,
		Example: `  DATABASE_URL=postgres://rotator@db:5432/rotator rotator migrate`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := state.Open(cmd.Context(), a.databaseURL)
			if err != nil {
				return err
			}
			defer db.Close()
			applied, err := db.Migrate(cmd.Context())
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintf(a.stdout, "state schema at %s is up to date (version %d)\n", db.Where(), state.LatestVersion())
				return nil
			}
			fmt.Fprintf(a.stdout, "applied migrations %v to %s; schema is at version %d\n", applied, db.Where(), state.LatestVersion())
			return nil
		},
	}
}

func (a *app) keygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new state key (for ROTATOR_STATE_KEY)",
		Long: `keygen prints a new random 256-bit key. rotator seals the credential a run has
generated with it before journaling it, so a run interrupted by a crash can be
resumed. Keep the key in a secret manager: a run sealed with a lost key cannot
be resumed (it can still be rolled back or discarded; see docs/runbook.md).`,
		Example: `  export ROTATOR_STATE_KEY=$(rotator keygen)
  rotator keygen > /etc/rotator/state.key && export ROTATOR_STATE_KEY_FILE=/etc/rotator/state.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := seal.Generate(nil)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, k)
			return nil
		},
	}
}

func (a *app) validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check policies.yaml and report every problem with file:line:column",
		Long: `validate loads the policies file and checks it entirely: its shape, every
reference between secrets, classes and stores, and each rotator's and store's
own settings. It needs no database, no state key and no secret.`,
		Example: `  rotator validate --policies /etc/rotator/policies.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: ok (%d secrets, %d stores, %d classes)\n", f.Path, len(f.Secrets), len(f.Stores), len(f.Classes))
			return nil
		},
	}
}

func (a *app) initCmd() *cobra.Command {
	var id string
	c := &cobra.Command{
		Use:   "init --secret ID",
		Short: "Turn an existing Postgres login role into a blue/green pair",
		Long: `init prepares a secret's target for dual-key rotation. For a Postgres secret in
blue_green mode it turns the role named in the policy (say app) into a group
role that keeps the privileges and owns the objects, and creates two login
roles app_blue and app_green as its members. It is idempotent: run it again
and it reports what is already in place. The existing role keeps its LOGIN
and its password until the first rotation retires it, so clients keep working.`,
		Example: `  ROTATOR_PG_ADMIN_DSN=postgres://admin@db/app rotator init --secret db/postgres`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			s, err := secretSpec(f, id)
			if err != nil {
				return err
			}
			if s.Rotator.Postgres == nil {
				return fmt.Errorf("secret %s: init prepares Postgres secrets only; this one uses the %s rotator, which needs no init", id, s.Rotator.Type())
			}
			w := newWiring(f, a.logger)
			defer w.Close()
			r, err := w.postgres(s)
			if err != nil {
				return err
			}
			rep, err := r.Init(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: %s\n", id, rep)
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id from policies.yaml (required)")
	return c
}

func (a *app) runCmd() *cobra.Command {
	var (
		id      string
		due     bool
		dryRun  bool
		noWait  bool
		trigger string
	)
	c := &cobra.Command{
		Use:   "run (--secret ID | --due)",
		Short: "Rotate a secret now, or everything that is due",
		Long: `run rotates one secret now, whatever its schedule (--secret), or every secret
that is due (--due, one tick for a Kubernetes CronJob). An unfinished run of the
secret (interrupted by a crash, or waiting for clients) is resumed from its last
durable step instead of starting a new one.

By default run waits through verify (until the clients moved or the grace ends)
and the monitor window. With --no-wait it returns as soon as a step must wait;
a later run (or the daemon) continues it.

--dry-run prints the steps it would take and touches nothing (it needs no
state key; without DATABASE_URL it plans a first rotation).`,
		Example: `  rotator run --secret db/postgres
  rotator run --secret db/postgres --dry-run
  rotator run --due --no-wait        # in a CronJob`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if (id == "") == !due {
				return withCode(exitUsage, errors.New("give exactly one of --secret ID and --due"))
			}
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			var specs []*policy.SecretSpec
			if due {
				specs = f.Secrets
			} else {
				s, err := secretSpec(f, id)
				if err != nil {
					return err
				}
				specs = []*policy.SecretSpec{s}
			}
			w := newWiring(f, a.logger)
			defer w.Close()
			if dryRun {
				// Without a state database the plan is that of a secret
				// never rotated; it changes nothing either way.
				e := &rotation.Engine{Logger: a.logger}
				if a.databaseURL != "" {
					db, err := a.openState(ctx)
					if err != nil {
						return err
					}
					defer db.Close()
					e.DB = db
				}
				for _, s := range specs {
					t, err := baseTarget(f, s, nil)
					if err != nil {
						return err
					}
					lines, err := e.Plan(ctx, t)
					if err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "%s (dry run: nothing is changed)\n", s.ID)
					for i, l := range lines {
						fmt.Fprintf(a.stdout, "  %d. %s\n", i+1, l)
					}
				}
				return nil
			}
			e, done, err := a.oneShot(ctx, f, true)
			if err != nil {
				return err
			}
			defer done()
			db := e.DB
			if err := db.SyncSecrets(ctx, secretDefs(f)); err != nil {
				return err
			}
			if trigger == "" {
				trigger = rotation.TriggerManual
				if due {
					trigger = rotation.TriggerSchedule
				}
			}
			worst := exitOK
			if due {
				code, err := a.runDue(ctx, e, db, f, w)
				if err != nil {
					return err
				}
				worst = code
			}
			rs, err := rules(f)
			if err != nil {
				return err
			}
			for _, s := range specs {
				if due {
					break
				}
				t, err := w.target(ctx, s)
				if err != nil {
					return err
				}
				scheduleTarget(&t, rs[s.ID], f.Settings(s).Retry)
				res, err := e.Run(ctx, t, rotation.Options{Trigger: trigger, Wait: !noWait})
				code := a.report(res, err)
				if code > worst {
					worst = code
				}
			}
			if worst != exitOK {
				return withCode(worst, errors.New(map[int]string{
					exitFailed: "a rotation failed; the old credential stays valid (see rotator history)",
					exitHeld:   "a rotation is held: clients still use the old credential",
					exitBusy:   "a secret is busy in another process",
					exitError:  "a rotation could not run",
				}[worst]))
			}
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "rotate this secret now (id from policies.yaml)")
	c.Flags().BoolVar(&due, "due", false, "rotate every secret that is due, advance waiting runs, then exit")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the steps and touch nothing")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return when a step must wait instead of waiting")
	c.Flags().StringVar(&trigger, "trigger", "", "recorded reason for the run (default manual, or schedule with --due)")
	_ = c.Flags().MarkHidden("trigger")
	return c
}

// runDue is one tick, as a CronJob runs it: it records due times, then
// rotates what is due and advances waiting runs, without waiting inside a
// run.
func (a *app) runDue(ctx context.Context, e *rotation.Engine, db *state.DB, f *policy.File, w *wiring) (int, error) {
	rs, err := rules(f)
	if err != nil {
		return exitError, err
	}
	if err := syncSchedule(ctx, db, f, rs, w.adoptedAge, time.Now()); err != nil {
		return exitError, err
	}
	targets := map[string]rotation.Target{}
	lookup := func(ctx context.Context, id string) (rotation.Target, bool, error) {
		if t, ok := targets[id]; ok {
			return t, true, nil
		}
		s, ok := f.Secret(id)
		if !ok {
			return rotation.Target{}, false, nil
		}
		t, err := w.target(ctx, s)
		if err != nil {
			return t, true, err
		}
		scheduleTarget(&t, rs[id], f.Settings(s).Retry)
		targets[id] = t
		return t, true, nil
	}
	rep, err := e.Tick(ctx, lookup, rotation.TickConfig{})
	if err != nil {
		return exitError, err
	}
	worst := exitOK
	for _, res := range rep.Results {
		if res.Status == "not_due" || res.Status == "" { // "": busy elsewhere, or an error listed below
			continue
		}
		if code := a.report(res, nil); code > worst {
			worst = code
		}
	}
	for _, err := range rep.Errs {
		fmt.Fprintf(a.stdout, "error: %v\n", err)
		worst = max(worst, exitError)
	}
	fmt.Fprintf(a.stdout, "tick: %d due, %d rotated, %d failed, %d waiting, %d held, %d busy, %d not due or outside their window\n",
		rep.Due, rep.Succeeded, rep.Failed, rep.Waiting, rep.Held, rep.Busy, rep.NotDue)
	return worst, nil
}

// nextDue is the plain interval rule: last success + interval, or now when
// never rotated.
func nextDue(sec state.Secret, set policy.Settings) time.Time {
	if sec.NextDueAt != nil {
		return *sec.NextDueAt
	}
	if sec.LastSuccessAt == nil {
		return time.Time{}
	}
	return sec.LastSuccessAt.Add(set.Interval)
}

func secretDefs(f *policy.File) []state.SecretDef {
	var defs []state.SecretDef
	for _, s := range f.Secrets {
		defs = append(defs, state.SecretDef{ID: s.ID, Class: f.Settings(s).Class})
	}
	return defs
}

// report prints one run's result and returns its exit code.
func (a *app) report(res rotation.Result, err error) int {
	switch {
	case errors.Is(err, rotation.ErrBusy):
		fmt.Fprintf(a.stdout, "%s: busy: %v\n", res.SecretID, err)
		return exitBusy
	case err != nil:
		fmt.Fprintf(a.stdout, "%s: error: %v\n", res.SecretID, err)
		return exitError
	}
	resumed := ""
	if res.Resumed {
		resumed = " (resumed)"
	}
	switch res.Status {
	case "not_due":
		fmt.Fprintf(a.stdout, "%s: not due (next at %s)\n", res.SecretID, res.WaitUntil.UTC().Format(time.RFC3339))
	case state.RunSucceeded:
		fmt.Fprintf(a.stdout, "%s: rotated%s: run %s, %s\n", res.SecretID, resumed, res.RunID, res.Detail)
	case state.RunFailed:
		fmt.Fprintf(a.stdout, "%s: FAILED%s: run %s at %s: %v\n  %s\n", res.SecretID, resumed, res.RunID, res.Step, res.Err, res.Detail)
		return exitFailed
	case state.RunRolledBack:
		fmt.Fprintf(a.stdout, "%s: ROLLED BACK%s: run %s: %s\n", res.SecretID, resumed, res.RunID, res.Detail)
		return exitFailed
	case state.RunWaiting, state.RunRunning:
		if res.Held {
			fmt.Fprintf(a.stdout, "%s: HELD%s: run %s at %s: %s\n  run `rotator run --secret %s` to look again\n", res.SecretID, resumed, res.RunID, res.Step, res.Detail, res.SecretID)
			return exitHeld
		}
		fmt.Fprintf(a.stdout, "%s: waiting%s: run %s at %s until %s: %s\n", res.SecretID, resumed, res.RunID, res.Step, res.WaitUntil.UTC().Format(time.RFC3339), res.Detail)
	default:
		fmt.Fprintf(a.stdout, "%s: %s: run %s at %s\n", res.SecretID, res.Status, res.RunID, res.Step)
	}
	return exitOK
}

func (a *app) rollbackCmd() *cobra.Command {
	var id string
	c := &cobra.Command{
		Use:   "rollback --secret ID",
		Short: "Make the previous version current again everywhere",
		Long: `rollback re-enables the previous credential at the target (Postgres: LOGIN on
the previous role) and then makes the previous version current in every store
the secret is published to. If the previous credential cannot be re-enabled,
the stores are left unchanged, so clients keep a working credential. It says
what it restored and what it could not.`,
		Example: `  rotator rollback --secret db/postgres`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			s, err := secretSpec(f, id)
			if err != nil {
				return err
			}
			// Rollback seals nothing: it runs without the state key (a lost
			// key must not prevent it).
			e, done, err := a.oneShot(ctx, f, false)
			if err != nil {
				return err
			}
			defer done()
			w := newWiring(f, a.logger)
			defer w.Close()
			t, err := w.target(ctx, s)
			if err != nil {
				return err
			}
			res, err := e.Rollback(ctx, t)
			if errors.Is(err, rotation.ErrBusy) {
				return withCode(exitBusy, err)
			}
			if err != nil {
				return err
			}
			for _, r := range res.Restored {
				fmt.Fprintf(a.stdout, "restored: %s\n", r)
			}
			for _, r := range res.Failed {
				fmt.Fprintf(a.stdout, "NOT restored: %s\n", r)
			}
			if len(res.Failed) > 0 {
				return withCode(exitPartial, fmt.Errorf("%s: rollback incomplete (run %s)", id, res.RunID))
			}
			fmt.Fprintf(a.stdout, "%s: version %d (%s) is current again (run %s)\n", id, res.To, res.Credential, res.RunID)
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id from policies.yaml (required)")
	return c
}

func (a *app) statusCmd() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show every secret: class, version, age, last outcome, next due",
		Long: `status lists every secret of the policies file with what the state database
knows of it. It needs no state key.`,
		Example: `  rotator status
  rotator status -o json | jq '.[] | select(.last_outcome == "failed")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if output != "table" && output != "json" {
				return withCode(exitUsage, fmt.Errorf("-o %q: want table or json", output))
			}
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			db, err := a.openState(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			// Read-only: a secret of the policy with no row yet is shown as
			// never rotated.
			all, err := db.Secrets(ctx)
			if err != nil {
				return err
			}
			byID := map[string]state.Secret{}
			for _, s := range all {
				byID[s.ID] = s
			}
			now := time.Now()
			type row struct {
				state.Secret
				Interval    string     `json:"interval"`
				AgeSeconds  *int64     `json:"age_seconds,omitempty"`
				Due         *time.Time `json:"due,omitempty"`
				ActiveRun   string     `json:"active_run,omitempty"`
				ActiveStep  string     `json:"active_step,omitempty"`
				InPolicyNow bool       `json:"in_policy"`
				Overdue     bool       `json:"overdue"`
			}
			var rows []row
			for _, s := range f.Secrets {
				set := f.Settings(s)
				sec, ok := byID[s.ID]
				if !ok {
					sec = state.Secret{ID: s.ID, Class: set.Class, Status: "active"}
				}
				r := row{Secret: sec, Interval: policy.Duration(set.Interval).String(), InPolicyNow: true}
				if sec.LastSuccessAt != nil {
					age := int64(now.Sub(*sec.LastSuccessAt).Seconds())
					r.AgeSeconds = &age
					r.Overdue = schedule.Overdue(*sec.LastSuccessAt, now, set.Interval)
				}
				d := nextDue(sec, set)
				r.Due = &d
				if run, err := db.ActiveRun(ctx, s.ID); err == nil && run != nil {
					r.ActiveRun, r.ActiveStep = run.ID, run.Step
				}
				rows = append(rows, r)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SECRET\tCLASS\tVERSION\tCREDENTIAL\tAGE\tLAST\tNEXT DUE\tSTATUS")
			for _, r := range rows {
				age := "never rotated"
				if r.AgeSeconds != nil {
					age = humanDuration(time.Duration(*r.AgeSeconds) * time.Second)
				}
				due := "now"
				if r.Due != nil && !r.Due.IsZero() {
					due = r.Due.UTC().Format("2006-01-02 15:04Z")
				}
				last := r.LastOutcome
				if last == "" {
					last = "-"
				}
				status := r.Status
				if status == "" {
					status = "active"
				}
				if r.Overdue {
					status += " OVERDUE"
				}
				if r.ActiveRun != "" {
					status += " (run at " + r.ActiveStep + ")"
				}
				cred := rotation.CredentialMeta{Username: r.Current.Username, KeyID: r.Current.KeyID}.String()
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Class, r.CurrentVersion, cred, age, last, due, status)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

func humanDuration(d time.Duration) string {
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

func (a *app) historyCmd() *cobra.Command {
	var (
		id     string
		output string
		limit  int
	)
	c := &cobra.Command{
		Use:   "history --secret ID",
		Short: "Show a secret's runs and their steps, with timings and errors",
		Long: `history shows the runs of one secret, newest first: trigger, outcome, version,
and every journaled step with its attempt, duration, outcome and (redacted)
error. It needs no state key.`,
		Example: `  rotator history --secret db/postgres
  rotator history --secret db/postgres -o json --limit 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if id == "" {
				return withCode(exitUsage, errors.New("--secret is required (e.g. --secret db/postgres)"))
			}
			db, err := a.openState(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			runs, err := db.Runs(ctx, id, limit)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if runs == nil {
					runs = []*state.Run{}
				}
				return enc.Encode(runs)
			}
			if output != "" && output != "table" {
				return withCode(exitUsage, fmt.Errorf("-o %q: want table or json", output))
			}
			if len(runs) == 0 {
				fmt.Fprintf(a.stdout, "%s: no runs yet\n", id)
				return nil
			}
			for _, r := range runs {
				end := "…"
				if r.FinishedAt != nil {
					end = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
				}
				fmt.Fprintf(a.stdout, "run %s  %s  %s  version %d  %s -> %s  started %s  took %s\n",
					r.ID, r.Trigger, strings.ToUpper(r.Status), r.Version, metaString(r.Old), metaString(r.New),
					r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), end)
				if r.Detail != "" {
					fmt.Fprintf(a.stdout, "  %s\n", r.Detail)
				}
				if r.Error != "" {
					fmt.Fprintf(a.stdout, "  error: %s\n", r.Error)
				}
				tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
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
				_ = tw.Flush()
			}
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id (required)")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.Flags().IntVar(&limit, "limit", 20, "how many runs, newest first")
	return c
}

func metaString(m state.Meta) string {
	return rotation.CredentialMeta{Username: m.Username, KeyID: m.KeyID}.String()
}
