// Command rotator rotates secrets without breaking the applications that
// use them. This package is wiring only: flags, construction, output.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes, documented in README.md and `rotator --help`.
const (
	exitOK      = 0
	exitError   = 1 // bad input, unreachable database or store, internal error
	exitUsage   = 2 // bad flags
	exitFailed  = 3 // a rotation failed (the old credential stays valid)
	exitHeld    = 4 // a rotation is held: clients still use the old credential after the grace
	exitBusy    = 5 // the secret is being rotated by another process
	exitPartial = 6 // rollback could not restore everything
	exitBroken  = 7 // check: a published credential does not work, or the stores disagree
	exitDrift   = 8 // the state database and the stores disagree; nothing was changed (see rotator adopt)
)

// exitError carries an exit code through cobra.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codeError{code: code, err: err}
}

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &app{stdout: stdout, stderr: stderr}
	root := app.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "error:", err)
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	if isUsage(err) {
		return exitUsage
	}
	return exitError
}

// isUsage recognises the errors cobra returns before any command runs
// (an unknown command, wrong positional arguments); flag errors are marked
// by the FlagErrorFunc instead.
func isUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "accepts ") || strings.HasPrefix(s, "unknown shorthand")
}

// app holds the global flags and what commands build from them.
type app struct {
	stdout, stderr io.Writer
	policiesPath   string
	databaseURL    string
	logLevel       string
	logFormat      string
	leaseTTLFlag   string
	leaseTTL       time.Duration
	logger         *slog.Logger
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rotator",
		Short: "Rotate secrets without breaking the applications that use them",
		Long: `rotator rotates Postgres role passwords, API keys and admin tokens with the
dual-key process: generate the new credential beside the old one, publish it to
the secret stores (Vault KV v2, AWS Secrets Manager, a directory of files),
verify that clients use it, retire the old one, and monitor the new one. A
failure before retire leaves the old credential valid and published.

Configuration:
  --policies / ROTATOR_POLICIES     policies.yaml (default ./policies.yaml)
  --database-url / DATABASE_URL     Postgres for rotator's own state
  ROTATOR_STATE_KEY / ROTATOR_STATE_KEY_FILE
                                    key that seals in-flight credentials
                                    (make one with 'rotator keygen')
  --lease-ttl / ROTATOR_LEASE_TTL   how long a secret's lease lasts without
                                    renewal (default 30s, at least 5s); a
                                    process that dies holds its secrets
                                    this long

Exit codes:
  0 ok   1 error (bad input, unreachable database/store)   2 usage
  3 a rotation failed (the old credential stays valid)
  4 a rotation is held (clients still on the old credential after the grace)
  5 the secret is busy (another process holds its lease)
  6 a rollback could not restore everything
  7 check: a published credential does not work, or the stores disagree
  8 drift: the state database and the stores disagree; nothing was
    changed until 'rotator adopt --secret ID'`,
		Example:       `  rotator validate && rotator migrate && rotator run --due`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.parseLeaseTTL(); err != nil {
				return err
			}
			return a.setupLogging()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	f := root.PersistentFlags()
	f.StringVar(&a.policiesPath, "policies", envOr("ROTATOR_POLICIES", "policies.yaml"), "policies file (env ROTATOR_POLICIES)")
	f.StringVar(&a.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "state database connection string (env DATABASE_URL)")
	f.StringVar(&a.logLevel, "log-level", envOr("ROTATOR_LOG_LEVEL", "info"), "debug, info, warn or error (env ROTATOR_LOG_LEVEL)")
	f.StringVar(&a.leaseTTLFlag, "lease-ttl", envOr("ROTATOR_LEASE_TTL", defaultLeaseTTL.String()),
		"how long a secret's lease lasts without renewal; renewed every third of it (env ROTATOR_LEASE_TTL, at least "+minLeaseTTL.String()+")")
	f.StringVar(&a.logFormat, "log-format", envOr("ROTATOR_LOG_FORMAT", "text"), "text or json (env ROTATOR_LOG_FORMAT); logs go to stderr")

	root.AddCommand(
		a.migrateCmd(), a.keygenCmd(), a.validateCmd(), a.initCmd(), a.runCmd(),
		a.statusCmd(), a.historyCmd(), a.rollbackCmd(), a.versionCmd(),
		a.daemonCmd(), a.planCmd(), a.resumeCmd(), a.notifyCmd(),
		a.checkCmd(), a.adoptCmd(),
	)
	return root
}

// defaultLeaseTTL is the lease TTL when --lease-ttl is not given.
const defaultLeaseTTL = 30 * time.Second

// parseLeaseTTL validates --lease-ttl (or ROTATOR_LEASE_TTL).
func (a *app) parseLeaseTTL() error {
	d, err := time.ParseDuration(a.leaseTTLFlag)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--lease-ttl (or ROTATOR_LEASE_TTL) %q: want a duration such as 30s or 2m", a.leaseTTLFlag))
	}
	if d < minLeaseTTL {
		return withCode(exitUsage, fmt.Errorf("--lease-ttl (or ROTATOR_LEASE_TTL) %s is too short: want at least %s (the lease is renewed every third of it; a shorter one is lost to a short pause of the process or the database)", d, minLeaseTTL))
	}
	a.leaseTTL = d
	return nil
}

func (a *app) setupLogging() error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		return withCode(exitUsage, fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel))
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch a.logFormat {
	case "text":
		a.logger = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.logger = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return withCode(exitUsage, fmt.Errorf("--log-format %q: want text or json", a.logFormat))
	}
	return nil
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print rotator's version",
		Example: `  rotator version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(a.stdout, "rotator", version)
			return nil
		},
	}
}
