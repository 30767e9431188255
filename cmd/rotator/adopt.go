package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rotator/rotator/rotation"
)

func (a *app) adoptCmd() *cobra.Command {
	var (
		id  string
		yes bool
	)
	c := &cobra.Command{
		Use:   "adopt --secret ID [--yes]",
		Short: "Record what the stores publish as current (the way out of drift)",
		Long: `adopt compares what the state database records as the secret's current
version with what every store publishes, and shows the differences. With
--yes, when the stores agree and the published credential logs in, it records
that version as current, ends an unfinished run that no longer matches (without
touching the target or the stores) and makes a secret in drift active again.

When the stores disagree with each other it changes nothing: make them agree
first (publish the working version everywhere by hand, or roll the odd store
back), then run adopt again.

A secret is put in drift when rotator finds the state database and the world
disagreeing in a way it does not resolve by itself; no run touches it until
adopt. Where the world is consistent rotator adopts it by itself and says so
in history ("adopted").`,
		Example: `  rotator adopt --secret db/postgres          # show the differences
  rotator adopt --secret db/postgres --yes    # record what the stores publish`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			e, t, done, err := a.oneSecret(ctx, id)
			if err != nil {
				return err
			}
			defer done()
			rep, err := e.Adopt(ctx, t, yes)
			if errors.Is(err, rotation.ErrBusy) {
				return withCode(exitBusy, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: the state database records %s as current\n", id, rep.Journal)
			for _, st := range rep.Stores {
				fmt.Fprintf(a.stdout, "  %s\n", st)
			}
			if len(rep.Differences) == 0 {
				fmt.Fprintf(a.stdout, "%s: the stores publish what the state database records; nothing to adopt\n", id)
				return nil
			}
			for _, d := range rep.Differences {
				fmt.Fprintf(a.stdout, "differs: %s\n", d)
			}
			switch {
			case rep.Adopted != "":
				if rep.Superseded != "" {
					fmt.Fprintf(a.stdout, "%s: ended the stale run %s (nothing was changed at the target)\n", id, rep.Superseded)
				}
				fmt.Fprintf(a.stdout, "%s: adopted %s as current\n", id, rep.Adopted)
			case !yes:
				fmt.Fprintf(a.stdout, "run `rotator adopt --secret %s --yes` to record what the stores publish\n", id)
			default:
				return withCode(exitDrift, fmt.Errorf("%s: the stores disagree; nothing was changed: make them agree, then run adopt again", id))
			}
			return nil
		},
	}
	c.Flags().StringVar(&id, "secret", "", "secret id from policies.yaml (required)")
	c.Flags().BoolVar(&yes, "yes", false, "record what the stores publish (without it adopt only shows the differences)")
	return c
}
