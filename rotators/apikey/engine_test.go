package apikey_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/checks"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/syncbuf"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const secretID = "api/openrouter"
const storePath = "api/openrouter.json"

// client is an application served by a local HTTP server that reports the
// fingerprint of the key it uses: it follows the store, or is stuck on
// the key it held when stuck was set.
type client struct {
	srv   *httptest.Server
	store *files.Store
	mu    sync.Mutex
	stuck string // fingerprint it keeps reporting; "" follows the store
}

func newClient(t *testing.T, store *files.Store) *client {
	c := &client{store: store}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		fp := c.stuck
		c.mu.Unlock()
		if fp == "" {
			v, err := c.store.Read(r.Context(), rotation.ReadRequest{Path: storePath})
			if err != nil {
				http.Error(w, "no secret", http.StatusServiceUnavailable)
				return
			}
			fp = v.Credential.Secret.Fingerprint()
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"name": secretID, "fingerprint": fp})
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *client) stay() {
	v, _ := c.store.Read(context.Background(), rotation.ReadRequest{Path: storePath})
	c.mu.Lock()
	c.stuck = v.Credential.Secret.Fingerprint()
	c.mu.Unlock()
}

func (c *client) follow() { c.mu.Lock(); c.stuck = ""; c.mu.Unlock() }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	t        *testing.T
	ctx      context.Context
	fake     *fakeOpenRouter
	stateDSN string
	db       *state.DB
	store    *files.Store
	engine   *rotation.Engine
	target   rotation.Target
	clock    *clock
	logs     *syncBuffer
	fast     *client
	slow     *client
	mu       sync.Mutex
	events   []notify.Event
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

// newWorld builds the real engine on a real state database (pgtest), a
// files store, the fake provider with the openrouter preset, and two
// clients behind an http check.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), fake: newFakeOpenRouter(t), logs: &syncBuffer{},
		clock: &clock{t: time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)}}
	w.stateDSN = pgtest.NewDatabase(t)
	var err error
	w.db, err = state.Open(w.ctx, w.stateDSN)
	require.NoError(t, err)
	t.Cleanup(w.db.Close)
	_, err = w.db.Migrate(w.ctx)
	require.NoError(t, err)
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.store, err = files.New(&policy.FilesSpec{Dir: t.TempDir()}, "", files.WithLogger(logger))
	require.NoError(t, err)
	prov, err := apikey.New(apikey.Config{
		Spec:       loadSpec(t, presetYAML(w.fake)),
		Management: func(context.Context) (secret.Value, error) { return secret.New(w.fake.mgmt), nil },
		Logger:     logger,
		Sleep:      func(context.Context, time.Duration) error { return nil },
	})
	require.NoError(t, err)
	w.fast, w.slow = newClient(t, w.store), newClient(t, w.store)
	w.engine = &rotation.Engine{DB: w.db, Key: key, Logger: logger, Holder: "test-" + t.Name(), LeaseTTL: 10 * time.Second,
		Now: w.clock.Now, Sleep: func(context.Context, time.Duration) error { return nil },
		Events: func(ev notify.Event) { w.mu.Lock(); w.events = append(w.events, ev); w.mu.Unlock() }}
	w.target = rotation.Target{
		ID: secretID, Class: "api_key", Rotator: prov,
		Publish: []rotation.Publication{{StoreName: "local", Path: storePath, Store: w.store}},
		Checks: []rotation.Check{&checks.HTTP{URLs: []string{w.fast.srv.URL + "/secret-version", w.slow.srv.URL + "/secret-version"}},
			&checks.LastUsed{Reporter: prov, UnusedFor: 10 * time.Minute}},
		Grace: time.Hour, OnTimeout: "hold", Monitor: 0,
		Retry: rotation.Retry{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond},
		Poll:  time.Minute,
	}
	return w
}

func (w *world) run(opts rotation.Options) rotation.Result {
	w.t.Helper()
	res, err := w.engine.Run(w.ctx, w.target, opts)
	require.NoError(w.t, err)
	return res
}

func (w *world) published() rotation.Version {
	w.t.Helper()
	v, err := w.store.Read(w.ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(w.t, err)
	return v
}

// noPlaintext searches the logs, the events, the given outputs and a dump
// of the state database for every key the provider ever made.
func (w *world) noPlaintext(extra ...string) {
	w.t.Helper()
	dump, err := exec.Command("pg_dump", "--data-only", w.stateDSN).CombinedOutput()
	require.NoError(w.t, err, string(dump))
	require.Contains(w.t, string(dump), secretID)
	w.mu.Lock()
	evs, _ := json.Marshal(w.events)
	w.mu.Unlock()
	noSecrets(w.t, w.fake, append([]string{w.logs.String(), string(dump), string(evs)}, extra...)...)
}

// A rotation waits for the slow client, retires the old key only after it
// moved, and a client that never moves holds the run (both keys valid)
// and is named in the alert.
func TestRotationWaitsForClients(t *testing.T) {
	t.Parallel()
	w := newWorld(t)

	// The first rotation: no old key to wait for.
	res := w.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := w.published()
	k1 := v1.Credential.Secret.Reveal()
	require.True(t, w.fake.valid(k1))
	require.Equal(t, "api_key", v1.Credential.Field)

	// The slow client keeps v1 for now.
	w.slow.stay()
	res = w.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status, "%+v", res)
	require.Equal(t, state.StepVerify, res.Step)
	require.Contains(t, res.Detail, w.slow.srv.URL, "the detail names the client that stayed behind")
	require.Contains(t, res.Detail, "1 of 2 clients not on version 2: "+w.slow.srv.URL)
	v2 := w.published()
	k2 := v2.Credential.Secret.Reveal()
	require.True(t, w.fake.valid(k1), "the old key stays valid while a client uses it")
	require.True(t, w.fake.valid(k2))

	w.clock.Add(5 * time.Minute)
	res = w.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status)
	require.True(t, w.fake.valid(k1))

	// It moves: but the old key was looked at only 5 minutes ago, and
	// last_used wants 10 minutes without spend.
	w.slow.follow()
	w.clock.Add(time.Minute)
	res = w.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status, "%+v", res)
	require.Contains(t, res.Detail, "last used")
	require.True(t, w.fake.valid(k1))
	w.clock.Add(10 * time.Minute)
	res = w.run(rotation.Options{})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.False(t, w.fake.valid(k1), "retired after the client moved")
	require.True(t, w.fake.valid(k2))

	// A client that never moves: the run is held when the grace ends.
	w.slow.stay()
	res = w.run(rotation.Options{})
	require.Equal(t, state.RunWaiting, res.Status)
	w.clock.Add(2 * time.Hour)
	res = w.run(rotation.Options{})
	require.True(t, res.Held, "%+v", res)
	require.Contains(t, res.Detail, w.slow.srv.URL)
	res = w.run(rotation.Options{})
	require.True(t, res.Held)
	v3 := w.published()
	require.True(t, w.fake.valid(k2), "held: the old key stays valid")
	require.True(t, w.fake.valid(v3.Credential.Secret.Reveal()))
	w.mu.Lock()
	var held []notify.Event
	for _, ev := range w.events {
		if ev.Kind == notify.KindRotationFailed {
			held = append(held, ev)
		}
	}
	w.mu.Unlock()
	require.Len(t, held, 1, "a held run alerts once")
	require.Contains(t, held[0].Error, w.slow.srv.URL)
	w.noPlaintext(res.Detail)
}

// Create succeeded but the process died before the key was journaled:
// the resumed run revokes the stray it cannot use and completes with a
// new key, leaving exactly one live key at the provider.
func TestCrashAfterCreate(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.target.Checks = nil
	require.Equal(t, state.RunSucceeded, w.run(rotation.Options{Wait: true}).Status)
	v1 := w.published()

	crashed := false
	w.engine.Hooks.After = func(runID string, step state.Step) error {
		if step == state.StepGenerate && !crashed {
			crashed = true
			return rotation.ErrCrash
		}
		return nil
	}
	_, err := w.engine.Run(w.ctx, w.target, rotation.Options{Wait: true})
	require.ErrorIs(t, err, rotation.ErrCrash)
	require.Len(t, w.fake.live(), 2, "the crashed run left a key no one recorded")
	stray := w.fake.live()[1]

	// The crashed process's lease runs out; a new process resumes.
	_, err = w.db.Pool().Exec(w.ctx, `UPDATE rotator_leases SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	w.engine.Hooks = rotation.Hooks{}
	res := w.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.True(t, res.Resumed)
	v2 := w.published()
	require.Equal(t, []string{"rotator-" + secretID + "-" + res.RunID}, w.fake.live(), "only the new key is live")
	require.Equal(t, stray, w.fake.live()[0], "same run, same name: the stray had the run's name")
	require.False(t, w.fake.valid(v1.Credential.Secret.Reveal()))
	require.True(t, w.fake.valid(v2.Credential.Secret.Reveal()))
	require.Contains(t, w.logs.String(), "revoked a stray api key")
	w.noPlaintext()
}

// A provider that fails to verify new keys: the run fails at generate, the
// key is revoked, the old key stays valid and published.
func TestBrokenNewKeyFailsRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.target.Checks = nil
	require.Equal(t, state.RunSucceeded, w.run(rotation.Options{Wait: true}).Status)
	v1 := w.published()
	w.fake.mu.Lock()
	w.fake.failNew, w.fake.leaky = true, true
	w.fake.mu.Unlock()
	res := w.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status)
	require.Error(t, res.Err)
	require.Contains(t, res.Err.Error(), "verify call")
	require.True(t, w.published().Credential.Secret.Equal(v1.Credential.Secret))
	require.Len(t, w.fake.live(), 1)
	w.noPlaintext(res.Err.Error(), fmt.Sprint(res))
	require.False(t, errors.Is(res.Err, rotation.ErrNotFound))
}
