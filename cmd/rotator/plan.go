package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/report"
	"github.com/rotator/rotator/state"
)

func (a *app) planCmd() *cobra.Command {
	var (
		id     string
		output string
		limit  int
	)
	c := &cobra.Command{
		Use:   "plan [--secret ID]",
		Short: "List the next rotations, or explain one secret's next due time",
		Long: `plan lists the next rotations: secret, class, when (in the policy's time zone)
and why that time. With --secret it explains one secret step by step: its last
success plus its interval (or its cron schedule), the move into its window,
and its jitter. It reads the state database (for last successes) but needs no
state key and changes nothing; without DATABASE_URL it plans as if nothing had
ever been rotated.

The due times are those run --due records and the daemon uses (see
'rotator status'): a secret that failed is due retry.next_run after its
failed attempt began; a never-rotated secret keeps the first due time
recorded for it; a quarantined secret is not due until resumed.`,
		Example: `  rotator plan
  rotator plan --secret db/postgres
  rotator plan -o json`,
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
			if id != "" {
				if _, err := secretSpec(f, id); err != nil {
					return err
				}
			}
			g, err := daemon.NewGeneration(f, nil)
			if err != nil {
				return err
			}
			var db *state.DB
			if a.databaseURL != "" {
				if db, err = a.openState(ctx); err != nil {
					return err
				}
				defer db.Close()
			}
			now := time.Now()
			var rows []report.PlanRow
			if id != "" {
				// One secret: only its row is read.
				decs, err := g.PreviewOf(ctx, db, now, id)
				if err != nil {
					return err
				}
				rows = report.Plan(g, decs, id)
			} else {
				// A batch of secrets at a time; with --limit only the
				// soonest are kept between batches.
				err := g.PreviewEach(ctx, db, now, func(decs []daemon.Decision) error {
					rows = append(rows, report.Plan(g, decs, "")...)
					if limit > 0 && len(rows) > 2*limit {
						rows = report.SortPlan(rows)[:limit]
					}
					return nil
				})
				if err != nil {
					return err
				}
				rows = report.SortPlan(rows)
			}
			if limit > 0 && len(rows) > limit {
				rows = rows[:limit]
			}
			return report.WritePlan(a.stdout, rows, output, id != "")
		},
	}
	c.Flags().StringVar(&id, "secret", "", "explain this secret")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.Flags().IntVar(&limit, "limit", 0, "show at most this many (0: all)")
	return c
}

func (a *app) resumeCmd() *cobra.Command {
	var id string
	c := &cobra.Command{
		Use:   "resume --secret ID",
		Short: "Lift a secret's quarantine so it is rotated again automatically",
		Long: `After several consecutive failed runs a secret is quarantined: the daemon and
'run --due' stop trying it (status shows it). Fix the cause (rotator history
--secret ID shows the errors), then resume it: it becomes due at once.`,
		Example: `  rotator resume --secret db/postgres`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return withCode(exitUsage, errors.New("--secret is required (e.g. --secret db/postgres)"))
			}
			db, err := a.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			ok, err := db.Resume(cmd.Context(), id, "cli")
			if err != nil {
				return err
			}
			if !ok {
				if _, err := db.Secret(cmd.Context(), id); errors.Is(err, state.ErrNotFound) {
					return fmt.Errorf("secret %s is not in the state database", id)
				}
				fmt.Fprintf(a.stdout, "%s was not quarantined; nothing to do\n", id)
				return nil
			}
			fmt.Fprintf(a.stdout, "%s: quarantine lifted; it is due now\n", id)
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id (required)")
	return c
}
