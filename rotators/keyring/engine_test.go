package keyring_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/checks"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/syncbuf"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/keyring"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	secretID  = "auth/jwt"
	storePath = "auth/jwt.json"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

// client is an application holding the ring through appsecret.KeyRing,
// serving its handler for the http check. A following client reloads the
// ring whenever it is asked which one it uses; otherwise it reloads only
// when the test says.
type client struct {
	ring   *appsecret.KeyRing
	srv    *httptest.Server
	mu     sync.Mutex
	follow bool
}

// env is one test's world: a state database, a files store, the keyring
// rotator and the engine, and two clients checked by an http check.
type env struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	stateDB string
	db      *state.DB
	engine  *rotation.Engine
	store   *files.Store
	target  rotation.Target
	logs    *syncBuffer
	clients []*client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), dir: t.TempDir(), logs: &syncBuffer{}}
	e.stateDB = pgtest.NewDatabase(t)
	var err error
	e.db, err = state.Open(e.ctx, e.stateDB)
	require.NoError(t, err)
	t.Cleanup(e.db.Close)
	_, err = e.db.Migrate(e.ctx)
	require.NoError(t, err)
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rot, err := keyring.New(spec(time.Hour), keyring.WithLogger(logger))
	require.NoError(t, err)
	e.store, err = files.New(&policy.FilesSpec{Dir: e.dir}, "")
	require.NoError(t, err)
	e.engine = &rotation.Engine{DB: e.db, Key: key, Logger: logger, Holder: "test-" + t.Name(), LeaseTTL: 10 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error { return nil }}
	e.target = rotation.Target{
		ID: secretID, Class: "admin_token", Rotator: rot,
		Publish: []rotation.Publication{{StoreName: "local", Path: storePath, Store: e.store}},
		Grace:   time.Hour, OnTimeout: "hold",
		Retry: rotation.Retry{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond},
		Poll:  10 * time.Millisecond,
	}
	return e
}

// addClients opens two clients on what the store publishes (a first ring
// must be published) and checks them with an http check.
func (e *env) addClients(follow bool) {
	e.t.Helper()
	var urls []string
	for range 2 {
		k, err := appsecret.OpenKeyRing(e.ctx, appsecret.Options{Name: secretID, File: filepath.Join(e.dir, storePath), Getenv: func(string) string { return "" }})
		require.NoError(e.t, err)
		c := &client{ring: k, follow: follow}
		c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.mu.Lock()
			f := c.follow
			c.mu.Unlock()
			if f {
				_, _ = k.Refresh(r.Context())
			}
			k.ServeHTTP(w, r)
		}))
		e.t.Cleanup(c.srv.Close)
		e.clients = append(e.clients, c)
		urls = append(urls, c.srv.URL)
	}
	e.target.Checks = []rotation.Check{&checks.HTTP{URLs: urls, Client: e.clients[0].srv.Client()}}
}

func (e *env) run(opts rotation.Options) rotation.Result {
	e.t.Helper()
	res, err := e.engine.Run(e.ctx, e.target, opts)
	require.NoError(e.t, err)
	return res
}

func (e *env) published() appsecret.Ring {
	e.t.Helper()
	v, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(e.t, err)
	r, err := appsecret.ParseRing(v.Credential.Secret.Reveal())
	require.NoError(e.t, err)
	return r
}

// crossVerify has every client sign a token and every client verify every
// token: what clients holding different rings do to each other.
func (e *env) crossVerify(what string) {
	e.t.Helper()
	var toks []string
	for _, c := range e.clients {
		tok, err := c.ring.SignJWT(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))})
		require.NoError(e.t, err)
		toks = append(toks, tok)
	}
	for i, c := range e.clients {
		for j, tok := range toks {
			_, err := c.ring.ParseJWT(tok, &jwt.RegisteredClaims{})
			require.NoError(e.t, err, "%s: client %d verifies client %d's token", what, i, j)
		}
	}
}

// noKeys searches the logs and a dump of the state database for every
// key the store has published.
func (e *env) noKeys(rings ...appsecret.Ring) {
	e.t.Helper()
	dump, err := exec.Command("pg_dump", "--data-only", e.stateDB).CombinedOutput()
	require.NoError(e.t, err, string(dump))
	require.Contains(e.t, string(dump), secretID)
	for _, r := range rings {
		for _, k := range r.Keys {
			for _, enc := range []string{base64.StdEncoding.EncodeToString(k.Material()), base64.RawStdEncoding.EncodeToString(k.Material())} {
				require.NotContains(e.t, e.logs.String(), enc, "a key leaked into the logs")
				require.NotContains(e.t, string(dump), enc, "a key leaked into the state database")
			}
		}
	}
}

// Through the engine: each run waits in verify until both clients hold
// the new ring; meanwhile a client on the new ring and one on the old
// verify each other's tokens; the new ring signs with the key the old one
// announced.
func TestEngineRotatesWithClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status, "a first ring (no client to check yet)")
	e.addClients(false)
	rings := []appsecret.Ring{e.published()}
	for i := 0; i < 10; i++ {
		before := e.published()
		announced, _ := before.Next()
		res := e.run(rotation.Options{})
		require.Equal(t, state.StepVerify, res.Step, "rotation %d: waits for the clients: %+v", i, res)
		after := e.published()
		s, _ := after.Signing()
		require.Equal(t, announced.ID, s.ID, "rotation %d: the announced key signs", i)
		rings = append(rings, after)
		e.crossVerify(fmt.Sprintf("rotation %d, no client on the new ring", i))
		_, err := e.clients[0].ring.Refresh(e.ctx)
		require.NoError(t, err)
		e.crossVerify(fmt.Sprintf("rotation %d, one client on the new ring", i))
		res = e.run(rotation.Options{})
		require.Equal(t, state.StepVerify, res.Step, "rotation %d: one client still on the old ring: %+v", i, res)
		_, err = e.clients[1].ring.Refresh(e.ctx)
		require.NoError(t, err)
		e.crossVerify(fmt.Sprintf("rotation %d, both clients on the new ring", i))
		res = e.run(rotation.Options{Wait: true})
		require.Equal(t, state.RunSucceeded, res.Status, "rotation %d: %+v", i, res)
	}
	e.noKeys(rings...)
}

// A crash before or after any step leaves a ring that works and that
// clients verify each other's tokens with; the next process resumes and
// completes, and the ring it publishes signs with the key announced
// before the crash (a generate done again builds on the same ring).
func TestEngineCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	for _, when := range []string{"before", "after"} {
		for _, step := range []state.Step{state.StepGenerate, state.StepStage, state.StepPublish, state.StepRetire, state.StepMonitor} {
			t.Run(when+" "+string(step), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
				e.addClients(true)
				before := e.published()
				announced, _ := before.Next()
				crashed := false
				hook := func(_ string, s state.Step) error {
					if s == step && !crashed {
						crashed = true
						e.crossVerify("at the crash")
						return rotation.ErrCrash
					}
					return nil
				}
				if when == "before" {
					e.engine.Hooks.Before = hook
				} else {
					e.engine.Hooks.After = hook
				}
				_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
				require.ErrorIs(t, err, rotation.ErrCrash)
				require.True(t, crashed)
				e.crossVerify("after the crash")

				_, err = e.db.Pool().Exec(e.ctx, `UPDATE rotator_leases SET expires_at = now() - interval '1 second'`)
				require.NoError(t, err)
				e.engine.Hooks = rotation.Hooks{}
				res := e.run(rotation.Options{Wait: true})
				require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
				after := e.published()
				s, _ := after.Signing()
				require.Equal(t, announced.ID, s.ID, "the ring signs with the key announced before the crash")
				e.crossVerify("after the resumed run")
				e.noKeys(before, after)
			})
		}
	}
}

// unreadable is a store that says what it publishes but cannot give it
// back (a permission on the value, a network error on the read).
type unreadable struct {
	rotation.Store
	mu   sync.Mutex
	fail bool
}

func (u *unreadable) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	u.mu.Lock()
	fail := u.fail
	u.mu.Unlock()
	if fail {
		return rotation.Version{}, errors.New("read: permission denied")
	}
	return u.Store.Read(ctx, req)
}

// A published ring that cannot be read fails generate: the rotator never
// starts a fresh ring over one clients hold. The ring stays published, and
// the next run builds on it.
func TestUnreadableRingFailsGenerate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := &unreadable{Store: e.store}
	e.target.Publish[0].Store = u
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	before := e.published()
	announced, _ := before.Next()

	u.fail = true
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.ErrorContains(t, res.Err, "permission denied")
	require.Equal(t, before.KeyIDs(), e.published().KeyIDs(), "nothing was published")

	u.fail = false
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	s, _ := e.published().Signing()
	require.Equal(t, announced.ID, s.ID)
}

// faulty is a store that fails while armed: "error" refuses publishes;
// "gone" takes the publish, then answers nothing at all (compensation
// included) until healed.
type faulty struct {
	rotation.Store
	mu    sync.Mutex
	kind  string
	down  bool
	armed bool
}

func (f *faulty) state() (armed, down bool, kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.armed, f.down, f.kind
}

var errUnreachable = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func (f *faulty) Publish(ctx context.Context, req rotation.PublishRequest) error {
	armed, down, kind := f.state()
	switch {
	case down:
		return errUnreachable
	case armed && kind == "error":
		return errUnreachable
	case armed && kind == "gone":
		if err := f.Store.Publish(ctx, req); err != nil {
			return err
		}
		f.mu.Lock()
		f.down = true
		f.mu.Unlock()
		return errUnreachable
	}
	return f.Store.Publish(ctx, req)
}

func (f *faulty) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	if _, down, _ := f.state(); down {
		return rotation.DescribeResponse{}, errUnreachable
	}
	return f.Store.Describe(ctx, req)
}

func (f *faulty) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	if _, down, _ := f.state(); down {
		return rotation.Version{}, errUnreachable
	}
	return f.Store.Read(ctx, req)
}

func (f *faulty) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if _, down, _ := f.state(); down {
		return errUnreachable
	}
	return f.Store.Rollback(ctx, req)
}

func (f *faulty) heal() {
	f.mu.Lock()
	f.armed, f.down = false, false
	f.mu.Unlock()
}

// A store that fails during publish (refusing it, or taking it and then
// vanishing, compensation included) at either place among two stores:
// whatever each store is left publishing, every client (one per store)
// verifies every token any client signed, through the failed run, the
// needs-attention state and the runs that follow; once healed, a run
// completes and signs with the key announced by the last ring that was
// really current.
func TestStoreFailuresKeepRingsCompatible(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"error", "gone"} {
		for _, at := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s at store %d", kind, at), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				mirrorDir := t.TempDir()
				mirror, err := files.New(&policy.FilesSpec{Dir: mirrorDir}, "")
				require.NoError(t, err)
				stores := []*faulty{{Store: e.store}, {Store: mirror}}
				e.target.Publish = []rotation.Publication{
					{StoreName: "local", Path: storePath, Store: stores[0]},
					{StoreName: "mirror", Path: storePath, Store: stores[1]},
				}
				require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
				var clients []*appsecret.KeyRing
				for _, d := range []string{e.dir, mirrorDir} {
					k, err := appsecret.OpenKeyRing(e.ctx, appsecret.Options{Name: secretID, File: filepath.Join(d, storePath), Getenv: func(string) string { return "" }})
					require.NoError(t, err)
					clients = append(clients, k)
				}
				var tokens []string
				check := func(what string) {
					t.Helper()
					for _, k := range clients {
						_, _ = k.Refresh(e.ctx)
						tok, err := k.SignJWT(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))})
						require.NoError(t, err)
						tokens = append(tokens, tok)
					}
					for i, k := range clients {
						for j, tok := range tokens {
							_, err := k.ParseJWT(tok, &jwt.RegisteredClaims{})
							require.NoError(t, err, "%s: client %d verifies token %d", what, i, j)
						}
					}
				}
				check("before")
				before := e.published()
				announced, _ := before.Next()

				stores[at].mu.Lock()
				stores[at].kind, stores[at].armed = kind, true
				stores[at].mu.Unlock()
				res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
				if err == nil {
					require.NotEqual(t, state.RunSucceeded, res.Status, "%+v", res)
				}
				check("after the failed run")
				res, _ = e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
				require.NotEqual(t, state.RunSucceeded, res.Status, "still failing: %+v", res)
				check("after a run while the store still fails")

				stores[at].heal()
				for i := 0; i < 4; i++ {
					res, err = e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
					check(fmt.Sprintf("healed, run %d", i))
					if err == nil && res.Status == state.RunSucceeded {
						break
					}
				}
				require.Equal(t, state.RunSucceeded, res.Status, "%+v %v", res, err)
				after := e.published()
				s, _ := after.Signing()
				require.Equal(t, announced.ID, s.ID, "signs with the key announced by the last ring really current")
				m, err := mirror.Read(e.ctx, rotation.ReadRequest{Path: storePath})
				require.NoError(t, err)
				mr, err := appsecret.ParseRing(m.Credential.Secret.Reveal())
				require.NoError(t, err)
				require.Equal(t, after.KeyIDs(), mr.KeyIDs(), "both stores publish the same ring")
			})
		}
	}
}

// A ring that would outgrow the stores' limit on one secret value fails
// generate with a message that says so: nothing is published, the
// published ring stays as it was and clients keep signing and verifying
// with it.
func TestRingAboveStoreLimitFailsBeforePublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The limit fits any ring of three keys of this policy, not four:
	// the third rotation (signing, next and two accepted keys) is refused.
	limit := appsecret.MaxPublishedSize(policy.DefaultKeyringAlgorithm, time.Hour, 32, 3)
	rot, err := keyring.New(spec(time.Hour), keyring.WithLogger(slog.New(slog.NewTextHandler(e.logs, nil))),
		keyring.WithValueLimit(limit, "the test store's limit"))
	require.NoError(t, err)
	e.target.Rotator = rot
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status, "a first ring: two keys")
	e.addClients(true)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status, "three keys fit")
	before := e.published()
	require.Len(t, before.Keys, 3)
	v0, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(t, err)

	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.Equal(t, state.StepGenerate, res.Step, "failed at generate, before publish: %+v", res)
	require.ErrorContains(t, res.Err, "the new ring would hold 4 keys")
	require.ErrorContains(t, res.Err, fmt.Sprintf("above the test store's limit (%d bytes): nothing was published", limit))
	v1, err := e.store.Read(e.ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(t, err)
	_, err = rot.Generate(e.ctx, rotation.GenerateRequest{SecretID: secretID, RunID: "r", Published: &v1.Credential})
	require.True(t, rotation.IsPermanent(err), "the engine does not retry it: %v", err)
	require.Equal(t, v0.Number, v1.Number, "nothing was published")
	require.Equal(t, before.KeyIDs(), e.published().KeyIDs())
	for _, c := range e.clients {
		_, err := c.ring.Refresh(e.ctx)
		require.NoError(t, err)
	}
	e.crossVerify("after the refused rotation")
	require.NoError(t, rot.Test(e.ctx, rotation.TestRequest{SecretID: secretID, Credential: v1.Credential}), "the published ring works")
	e.noKeys(before)
}
