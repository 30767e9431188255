package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/report"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
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
	var (
		id    string
		adopt bool
	)
	c := &cobra.Command{
		Use:   "init --secret ID",
		Short: "Turn an existing Postgres login role into a blue/green pair",
		Long: `init prepares a secret's target for dual-key rotation. For a Postgres secret in
blue_green mode it turns the role named in the policy (say app) into a group
role that keeps the privileges and owns the objects, and creates two login
roles app_blue and app_green as its members. It is idempotent: run it again
and it reports what is already in place. The existing role keeps its LOGIN
and its password until the first rotation retires it, so clients keep working.`,
		Example: `  ROTATOR_PG_ADMIN_DSN=postgres://admin@db/app rotator init --secret db/postgres
  rotator init --secret db/postgres --adopt-existing   # take existing app_blue/app_green as they are`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			s, err := secretSpec(f, id)
			if err != nil {
				return err
			}
			if s.Rotator.MySQL != nil {
				w := newWiring(f, a.logger)
				defer w.Close()
				return w.initMySQL(cmd.Context(), a.stdout, s)
			}
			if s.Rotator.Postgres == nil {
				return fmt.Errorf("secret %s: init prepares Postgres and MySQL secrets only; this one uses the %s rotator, which needs no init", id, s.Rotator.Type())
			}
			w := newWiring(f, a.logger)
			defer w.Close()
			r, err := w.postgres(s)
			if err != nil {
				return err
			}
			defer r.Close()
			rep, err := r.InitWith(cmd.Context(), postgres.InitRequest{AdoptExisting: adopt})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: %s\n", id, rep)
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id from policies.yaml (required)")
	c.Flags().BoolVar(&adopt, "adopt-existing", false, "take an existing <role>_blue/_green as it is, even with LOGIN, extra attributes or memberships (init refuses such roles otherwise)")
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

With --secret, run waits through verify (until its checks pass or the grace
ends: it looks again when a delay check ends, or at a polling check's interval)
and the monitor window. With --no-wait it returns as soon as a step must wait;
a later run (or the daemon) continues it.

--due is one tick, the daemon's: the same bounds (--concurrency, default 4;
--per-server, default 1) and the same code. It never waits inside a run: a run
that must wait is continued by the next run --due (a CronJob's next firing) or
by a daemon, which wakes it at its wait_until.

--dry-run prints the steps it would take and touches nothing (it needs no
state key; without DATABASE_URL it plans a first rotation).`,
		Example: `  rotator run --secret db/postgres
  rotator run --secret db/postgres --dry-run
  rotator run --due --no-wait        # in a CronJob
  rotator run --due --no-wait --concurrency 8 --per-server 2`,
		Args: cobra.NoArgs,
	}
	tickCfg := tickFlags(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if (id == "") == !due {
			return withCode(exitUsage, errors.New("give exactly one of --secret ID and --due"))
		}
		if !due && (cmd.Flags().Changed("concurrency") || cmd.Flags().Changed("per-server")) {
			return withCode(exitUsage, errors.New("--concurrency and --per-server bound a tick: use them with --due"))
		}
		if due && !dryRun && a.nothingDue(ctx) {
			return nil
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
		if dryRun {
			return a.dryRun(ctx, f, specs, due)
		}
		w := newWiring(f, a.logger)
		defer w.Close()
		g, err := daemon.NewGeneration(f, w)
		if err != nil {
			return err
		}
		e, done, err := a.oneShot(ctx, f, true)
		if err != nil {
			return err
		}
		defer done()
		db := e.DB
		if trigger == "" {
			trigger = string(state.TriggerManual)
			if due {
				trigger = string(state.TriggerSchedule)
			}
		}
		worst := exitOK
		if due {
			code, err := a.runDue(ctx, e, db, g, *tickCfg)
			if err != nil {
				return err
			}
			worst = code
		}
		for _, s := range specs {
			if due {
				break
			}
			t, release, _, err := g.Acquire(ctx, s.ID)
			if err != nil {
				return err
			}
			res, err := e.Run(ctx, t, rotation.Options{Trigger: state.Trigger(trigger), Wait: !noWait})
			release()
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
	}
	c.Flags().StringVar(&id, "secret", "", "rotate this secret now (id from policies.yaml)")
	c.Flags().BoolVar(&due, "due", false, "rotate every secret that is due, advance waiting runs, then exit")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the steps and touch nothing")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return when a step must wait instead of waiting")
	c.Flags().StringVar(&trigger, "trigger", "", "recorded reason for the run (default manual, or schedule with --due)")
	_ = c.Flags().MarkHidden("trigger")
	return c
}

// nothingDue answers a tick that has nothing to do at the cost of two
// small queries: when the state database was last synced from these very
// policies (the same bytes, which were loaded and validated then, by this
// build: daemon.SyncKey) and no secret or run is due, `run --due` neither
// parses the file nor recomputes a due time. In any other case, and on
// any error (which the whole tick then reports in its own words), it
// returns false and the whole tick follows: a changed file is always
// loaded, validated and synced.
func (a *app) nothingDue(ctx context.Context) bool {
	hash, err := policy.HashFile(a.policiesPath)
	if err != nil {
		return false
	}
	if _, err := seal.FromEnv(); err != nil {
		return false
	}
	db, err := a.openState(ctx)
	if err != nil {
		return false
	}
	defer db.Close()
	mark, err := db.ScheduleSync(ctx)
	if err != nil || mark.Key != daemon.SyncKey(hash) {
		return false
	}
	ids, err := db.Due(ctx, time.Now(), 1)
	if err != nil || len(ids) > 0 {
		return false
	}
	a.logger.Debug("nothing due; policies unchanged since the last schedule sync")
	a.printTick(rotation.TickReport{})
	return true
}

// printTick prints the summary line of a tick.
func (a *app) printTick(rep rotation.TickReport) {
	fmt.Fprintf(a.stdout, "tick: %d due, %d rotated, %d failed, %d waiting, %d held, %d busy, %d not due or outside their window\n",
		rep.Due, rep.Succeeded, rep.Failed, rep.Waiting, rep.Held, rep.Busy, rep.NotDue)
}

// runDue is one tick, as a CronJob runs it: it records due times (Sync,
// skipped when the policies are the ones last synced),
// then rotates what is due and advances waiting runs, without waiting
// inside a run.
func (a *app) runDue(ctx context.Context, e *rotation.Engine, db *state.DB, g *daemon.Generation, cfg rotation.TickConfig) (int, error) {
	if err := g.Sync(ctx, db, time.Now()); err != nil {
		return exitError, err
	}
	lookup, release := g.Lookup()
	rep, err := e.Tick(ctx, lookup, cfg)
	release()
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
	a.printTick(rep)
	return worst, nil
}

// dryRun prints what run would do, touching nothing: with --due, what the
// tick would do with each secret now (daemon.Generation.Preview: the due
// time run --due would record, and its decision) and the steps of each run
// it would start or resume; with --secret, the steps of that run. Without
// a state database it plans as if nothing had ever been rotated.
func (a *app) dryRun(ctx context.Context, f *policy.File, specs []*policy.SecretSpec, due bool) error {
	e := &rotation.Engine{Logger: a.logger}
	if a.databaseURL != "" {
		db, err := a.openState(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		e.DB = db
	}
	plan := func(s *policy.SecretSpec) error {
		t, err := baseTarget(f, s, nil)
		if err != nil {
			return err
		}
		lines, err := e.Plan(ctx, t)
		if err != nil {
			return err
		}
		for i, l := range lines {
			fmt.Fprintf(a.stdout, "  %d. %s\n", i+1, l)
		}
		return nil
	}
	if !due {
		for _, s := range specs {
			fmt.Fprintf(a.stdout, "%s (dry run: nothing is changed)\n", s.ID)
			if err := plan(s); err != nil {
				return err
			}
		}
		return nil
	}
	w := newWiring(f, a.logger)
	defer w.Close()
	g, err := daemon.NewGeneration(f, w)
	if err != nil {
		return err
	}
	decs, err := g.Preview(ctx, e.DB, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "run --due would, now (dry run: nothing is changed):")
	for _, d := range decs {
		fmt.Fprintln(a.stdout, report.Decision(d))
		if d.Action == daemon.ActionRotate || d.Action == daemon.ActionResume {
			s, _ := g.Spec(d.SecretID)
			if err := plan(s); err != nil {
				return err
			}
		}
	}
	return nil
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
	case state.RunNeedsAttention:
		fmt.Fprintf(a.stdout, "%s: NEEDS ATTENTION%s: run %s: %v\n  %s\n", res.SecretID, resumed, res.RunID, res.Err, res.Detail)
		return exitFailed
	case state.RunDrift:
		fmt.Fprintf(a.stdout, "%s: DRIFT: %v\n", res.SecretID, res.Err)
		return exitDrift
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
			// Rollback seals nothing: it runs without the state key (a lost
			// key must not prevent it).
			e, t, done, err := a.oneSecret(ctx, id)
			if err != nil {
				return err
			}
			defer done()
			res, err := e.Rollback(ctx, t)
			if errors.Is(err, rotation.ErrBusy) {
				return withCode(exitBusy, err)
			}
			if err != nil {
				return err
			}
			if res.Already {
				fmt.Fprintf(a.stdout, "%s: already rolled back: version %d (%s) is current; nothing changed\n", id, res.To, res.Credential)
				return nil
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
			g, err := daemon.NewGeneration(f, nil)
			if err != nil {
				return err
			}
			// A batch of secrets at a time: 100,000 secrets are not held
			// three times over (decisions, rows, output) at once.
			now := time.Now()
			sw := report.NewStatusWriter(a.stdout, output)
			if err := g.PreviewEach(ctx, db, now, func(decs []daemon.Decision) error {
				return sw.Write(report.Status(g, decs, now))
			}); err != nil {
				return err
			}
			return sw.Close()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
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
			// Flags are checked before anything runs: a bad one is a usage
			// error (exit 2), never a database error.
			if limit < 1 {
				return withCode(exitUsage, fmt.Errorf("--limit %d: want a number of runs, 1 or more", limit))
			}
			if output != "" && output != "table" && output != "json" {
				return withCode(exitUsage, fmt.Errorf("-o %q: want table or json", output))
			}
			db, err := a.openState(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if output != "table" && output != "json" {
				return withCode(exitUsage, fmt.Errorf("-o %q: want table or json", output))
			}
			runs, err := db.Runs(ctx, id, limit)
			if err != nil {
				return err
			}
			return report.WriteHistory(a.stdout, id, runs, output)
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id (required)")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.Flags().IntVar(&limit, "limit", 20, "how many runs, newest first")
	return c
}

// oneSecret loads the policies and builds the engine (without the state
// key: nothing is sealed) and the target of one secret, for the commands
// that act on one secret by hand (rollback, adopt). done releases both.
func (a *app) oneSecret(ctx context.Context, id string) (*rotation.Engine, rotation.Target, func(), error) {
	f, err := a.loadPolicy()
	if err != nil {
		return nil, rotation.Target{}, nil, err
	}
	s, err := secretSpec(f, id)
	if err != nil {
		return nil, rotation.Target{}, nil, err
	}
	e, done, err := a.oneShot(ctx, f, false)
	if err != nil {
		return nil, rotation.Target{}, nil, err
	}
	w := newWiring(f, a.logger)
	t, _, err := w.Target(ctx, s) // closed by w.Close
	if err != nil {
		w.Close()
		done()
		return nil, rotation.Target{}, nil, err
	}
	return e, t, func() { w.Close(); done() }, nil
}
