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

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

func (a *app) checkCmd() *cobra.Command {
	var (
		id      string
		output  string
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "check [--secret ID]",
		Short: "Test the credential every store publishes as current, and compare the stores",
		Long: `check tests, for every secret (or one), the credential each store publishes as
current: it reads the store's current version, tests it at the target (Postgres:
logs in; http_api: calls the provider's verify endpoint; token: the token is
there and has the configured prefix and length) and compares the stores with
each other (version number, run id, fingerprint of the value, username).

It is read-only: it takes no lease and changes nothing, so it is safe beside a
running daemon or rotation. DATABASE_URL is optional; with it, stores that differ
because a run is publishing right now are not reported as disagreeing. No state
key is needed. Each Describe, Read and test is bounded by --timeout.

Each store gets one status:
  ok           the credential works and every store publishes the same version
  broken       the credential does not work (login refused, key rejected, token
               missing or malformed), or the store cannot give back its version
  disagrees    the credential works, but the stores publish different versions
  unreachable  the store or the target did not answer
  unpublished  nothing is published yet (never rotated)

A broken credential is also sent as a credential_broken notification (Slack,
webhooks), once per episode.

Exit codes: 0 all ok; 7 a published credential is broken or the stores disagree;
1 a store or target could not be checked (and nothing is broken).`,
		Example: `  rotator check
  rotator check --secret db/postgres
  rotator check -o json | jq '.[].stores[] | select(.status != "ok")'`,
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
			specs := f.Secrets
			if id != "" {
				s, err := secretSpec(f, id)
				if err != nil {
					return err
				}
				specs = []*policy.SecretSpec{s}
			}
			e := &rotation.Engine{Logger: a.logger, Now: time.Now}
			if a.databaseURL != "" {
				db, err := a.openState(ctx)
				if err != nil {
					// The check does not need the state database: a check
					// that cannot run while it is down is no check.
					a.logger.Warn("state database unavailable; checking without it (a run publishing now may show as a disagreement)", "err", err.Error())
				} else {
					defer db.Close()
					e.DB = db
				}
			}
			flush, err := a.withNotifier(ctx, e, f)
			if err != nil {
				return err
			}
			defer flush()
			w := newWiring(f, a.logger)
			defer w.Close()

			ck := &rotation.Checker{Engine: e, Timeout: timeout}
			reports := make([]rotation.CheckReport, 0, len(specs))
			var errs []string
			for _, s := range specs {
				rep, err := checkSecret(ctx, w, ck, s)
				if err != nil {
					if ctx.Err() != nil {
						return err
					}
					errs = append(errs, err.Error())
				}
				reports = append(reports, rep)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(reports); err != nil {
					return err
				}
			} else if err := a.printChecks(reports); err != nil {
				return err
			}
			var broken, unreachable []string
			for _, r := range reports {
				if r.Broken() {
					broken = append(broken, r.SecretID)
				} else if r.Unreachable() {
					unreachable = append(unreachable, r.SecretID)
				}
			}
			if len(broken) > 0 {
				return withCode(exitBroken, fmt.Errorf("%s: a published credential does not work or the stores disagree (see the report above)",
					strings.Join(broken, ", ")))
			}
			if len(errs) > 0 || len(unreachable) > 0 {
				msg := append(errs, unreachableMsg(unreachable)...)
				return errors.New(strings.Join(msg, "; "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "check only this secret (id from policies.yaml)")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.Flags().DurationVar(&timeout, "timeout", rotation.DefaultCheckTimeout, "deadline of each store read and credential test")
	return c
}

func unreachableMsg(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	return []string{"could not check " + strings.Join(ids, ", ") + " (a store or the target did not answer)"}
}

// checkSecret builds one secret's target and checks it. A target that
// cannot be built (a store that cannot be configured) is an error, with a
// report that names the secret.
func checkSecret(ctx context.Context, w *wiring, ck *rotation.Checker, s *policy.SecretSpec) (rotation.CheckReport, error) {
	rep := rotation.CheckReport{SecretID: s.ID, CheckedAt: time.Now().UTC()}
	t, release, err := w.Target(ctx, s)
	if err != nil {
		return rep, fmt.Errorf("check %s: %w", s.ID, err)
	}
	defer release()
	return ck.Check(ctx, t)
}

// printChecks prints one row per secret and store.
func (a *app) printChecks(reports []rotation.CheckReport) error {
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SECRET\tSTORE\tSTATUS\tVERSION\tCREDENTIAL\tFINGERPRINT\tDETAIL")
	for _, r := range reports {
		if len(r.Stores) == 0 {
			fmt.Fprintf(tw, "%s\t-\terror\t-\t-\t-\tnot checked (see the error below)\n", r.SecretID)
		}
		for _, s := range r.Stores {
			version, cred, fp := "-", "-", "-"
			if s.Current != nil {
				version = fmt.Sprintf("%d", s.Current.Number)
				if s.Current.Username != "" {
					cred = s.Current.Username
				}
				if s.Current.Fingerprint != "" {
					fp = s.Current.Fingerprint
				}
			}
			var detail []string
			if s.Reason != "" {
				detail = append(detail, s.Reason)
			}
			detail = append(detail, s.Differs...)
			if len(detail) == 0 && r.Note != "" {
				detail = append(detail, r.Note)
			}
			status := s.Status
			if status != rotation.CheckOK && status != rotation.CheckUnpublished {
				status = strings.ToUpper(status)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.SecretID, s.Publication(), status, version, cred, fp,
				oneLine(strings.Join(detail, "; ")))
		}
	}
	return tw.Flush()
}

// oneLine keeps a table row on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
