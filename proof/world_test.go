package proof_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// engineWorld is an in-process engine with a Postgres rotator and the files
// store, for the tests that need control between steps (outages) or many
// rotations quickly (load).
type engineWorld struct {
	t       *testing.T
	tg      *target
	db      *state.DB
	engine  *rotation.Engine
	rotator *postgres.Rotator
	dir     string // files store directory
	target  rotation.Target
}

// newEngineWorld builds the world; adminDSN reaches the target (through a
// proxy for the outage tests), mode is blue_green or single_role.
func newEngineWorld(t *testing.T, tg *target, adminDSN, mode string) *engineWorld {
	t.Helper()
	ctx := context.Background()
	w := &engineWorld{t: t, tg: tg, dir: t.TempDir()}
	var err error
	w.db, err = state.Open(ctx, newStateDSN(t))
	require.NoError(t, err)
	t.Cleanup(w.db.Close)
	_, err = w.db.Migrate(ctx)
	require.NoError(t, err)
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("PROOF_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	spec := &policy.PostgresSpec{Role: tg.role, Mode: mode, Connection: map[string]string{"database": dbName(tg.dsn)}}
	w.rotator, err = postgres.New(spec, secret.New(adminDSN), postgres.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(w.rotator.Close)
	if mode == policy.ModeBlueGreen {
		_, err = w.rotator.Init(ctx)
		require.NoError(t, err)
	}
	store, err := files.New(&policy.FilesSpec{Dir: w.dir}, "")
	require.NoError(t, err)
	w.engine = &rotation.Engine{DB: w.db, Key: key, Logger: logger, Holder: "proof-" + t.Name(), LeaseTTL: 10 * time.Second}
	w.target = rotation.Target{
		ID: "db/postgres", Class: "database", Rotator: w.rotator,
		Publish: []rotation.Publication{{StoreName: "local", Path: "db/postgres.json", Store: store}},
		Grace:   30 * time.Second, OnTimeout: "hold", Monitor: 0,
		Retry: rotation.Retry{Attempts: 3, Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Poll:  20 * time.Millisecond,
	}
	return w
}

func dbName(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	return u.Path[1:]
}

// cred is a credential as an application reads it from the files store.
type cred struct {
	User     string `json:"username"`
	Password string `json:"password"`
	Version  string `json:"version"`
	RunID    string `json:"run_id"`
}

// readCred reads the published file the way an application does; before
// anything is published the application uses the role's first password.
func (w *engineWorld) readCred() (cred, error) {
	b, err := os.ReadFile(filepath.Join(w.dir, "db/postgres.json"))
	if errors.Is(err, os.ErrNotExist) {
		return cred{User: w.tg.role, Password: w.tg.initial}, nil
	}
	if err != nil {
		return cred{}, err
	}
	var c cred
	err = json.Unmarshal(b, &c)
	return c, err
}

func (w *engineWorld) run() rotation.Result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := w.engine.Run(ctx, w.target, rotation.Options{Wait: true})
	require.NoError(w.t, err)
	return res
}

// publishedLogsIn checks that what the files store holds logs in.
func (w *engineWorld) publishedLogsIn(what string) cred {
	w.t.Helper()
	c, err := w.readCred()
	require.NoError(w.t, err)
	require.NoError(w.t, w.tg.login(c.User, c.Password), "%s: the published credential %s must log in", what, c.User)
	return c
}
