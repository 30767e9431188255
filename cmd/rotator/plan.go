package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
ever been rotated.`,
		Example: `  rotator plan
  rotator plan --secret db/postgres
  rotator plan -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			rs, err := rules(f)
			if err != nil {
				return err
			}
			last := map[string]time.Time{}
			status := map[string]string{}
			if a.databaseURL != "" {
				db, err := a.openState(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				all, err := db.Secrets(ctx)
				if err != nil {
					return err
				}
				for _, s := range all {
					if s.LastSuccessAt != nil {
						last[s.ID] = *s.LastSuccessAt
					}
					status[s.ID] = s.Status
				}
			}
			now := time.Now()
			type row struct {
				Secret string    `json:"secret"`
				Class  string    `json:"class"`
				Due    time.Time `json:"due"`
				Local  string    `json:"due_local"`
				Why    string    `json:"why"`
				Steps  []string  `json:"steps,omitempty"`
				Status string    `json:"status,omitempty"`
			}
			var rows []row
			for _, s := range f.Secrets {
				if id != "" && s.ID != id {
					continue
				}
				set := f.Settings(s)
				r := rs[s.ID]
				due, ex, err := r.Next(s.ID, last[s.ID], now)
				if err != nil {
					return err
				}
				loc, _ := time.LoadLocation(set.TimeZone)
				rows = append(rows, row{Secret: s.ID, Class: set.Class, Due: due.UTC(), Local: due.In(loc).Format("Mon 2006-01-02 15:04 MST"),
					Why: ex.String(), Steps: append([]string{ex.Reason}, ex.Steps...), Status: status[s.ID]})
			}
			if id != "" && len(rows) == 0 {
				_, err := secretSpec(f, id)
				return err
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].Due.Before(rows[j].Due) })
			if limit > 0 && len(rows) > limit {
				rows = rows[:limit]
			}
			switch output {
			case "json":
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			case "", "table":
			default:
				return withCode(exitUsage, fmt.Errorf("-o %q: want table or json", output))
			}
			if id != "" {
				r := rows[0]
				fmt.Fprintf(a.stdout, "%s (%s) is next due %s\n", r.Secret, r.Class, r.Local)
				for _, s := range r.Steps {
					fmt.Fprintf(a.stdout, "  - %s\n", s)
				}
				if r.Status == "quarantined" {
					fmt.Fprintf(a.stdout, "  - it is QUARANTINED: no automatic attempt until `rotator resume --secret %s`\n", r.Secret)
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DUE\tSECRET\tCLASS\tWHY")
			for _, r := range rows {
				why := r.Why
				if r.Status == "quarantined" {
					why = "QUARANTINED; " + why
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Local, r.Secret, r.Class, why)
			}
			return tw.Flush()
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
