package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// countingBuilder is a daemon.Builder of token secrets published to one
// files store, which counts the targets it built and those still held
// (built, not released), and fails any use of a rotator after its release
// or of the store after Close: a run or a check whose objects were freed
// under it fails instead of passing.
type countingBuilder struct {
	file  *policy.File
	store *guardedStore
	// gate, when set, holds every Generate until it is closed; entered
	// is told (once per Generate) when one is held.
	gate    chan struct{}
	entered chan string

	mu                      sync.Mutex
	built, held, maxHeld    int
	usedAfterRelease        []string
	closed                  bool
	closedWhileHeld         bool
	releasedWhileGenerating bool
}

func newCountingBuilder(t *testing.T, f *policy.File, dir string) *countingBuilder {
	t.Helper()
	st, err := files.New(&policy.FilesSpec{Dir: dir}, "")
	require.NoError(t, err)
	b := &countingBuilder{file: f}
	b.store = &guardedStore{Store: st, b: b}
	return b
}

func (b *countingBuilder) Target(_ context.Context, s *policy.SecretSpec) (rotation.Target, func(), error) {
	tok, err := apikey.NewToken(s.Rotator.Token)
	if err != nil {
		return rotation.Target{}, nil, err
	}
	r := &guardedRotator{Rotator: tok, b: b}
	b.mu.Lock()
	b.built++
	b.held++
	b.maxHeld = max(b.maxHeld, b.held)
	b.mu.Unlock()
	t := rotation.Target{ID: s.ID, Class: s.Class, Rotator: r, Grace: time.Millisecond, Retry: rotation.Retry{Attempts: 1}}
	for _, p := range s.Publish {
		t.Publish = append(t.Publish, rotation.Publication{StoreName: p.Store, Path: p.Path, Store: b.store})
	}
	var once sync.Once
	return t, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.held--
			if r.generating {
				b.releasedWhileGenerating = true
			}
			r.released = true
		})
	}, nil
}

func (b *countingBuilder) AdoptedAge(context.Context, *policy.SecretSpec) time.Time {
	return time.Time{}
}

func (b *countingBuilder) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.held > 0 {
		b.closedWhileHeld = true
	}
}

func (b *countingBuilder) counts() (built, held, maxHeld int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.built, b.held, b.maxHeld
}

// use records a use of something freed.
func (b *countingBuilder) use(what string, freed bool) error {
	if !freed {
		return nil
	}
	b.usedAfterRelease = append(b.usedAfterRelease, what)
	return fmt.Errorf("%s used after it was freed", what)
}

type guardedRotator struct {
	rotation.Rotator
	b                    *countingBuilder
	released, generating bool // under b.mu
}

func (r *guardedRotator) check(what string) error {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	return r.b.use("rotator ("+what+")", r.released)
}

func (r *guardedRotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	if err := r.check("generate"); err != nil {
		return rotation.GenerateResponse{}, err
	}
	if r.b.gate != nil {
		r.b.mu.Lock()
		r.generating = true
		r.b.mu.Unlock()
		r.b.entered <- req.SecretID
		<-r.b.gate
		r.b.mu.Lock()
		r.generating = false
		r.b.mu.Unlock()
	}
	if err := r.check("generate, after the wait"); err != nil {
		return rotation.GenerateResponse{}, err
	}
	return r.Rotator.Generate(ctx, req)
}

func (r *guardedRotator) Test(ctx context.Context, req rotation.TestRequest) error {
	if err := r.check("test"); err != nil {
		return err
	}
	return r.Rotator.Test(ctx, req)
}

func (r *guardedRotator) Retire(ctx context.Context, req rotation.RetireRequest) error {
	if err := r.check("retire"); err != nil {
		return err
	}
	return r.Rotator.Retire(ctx, req)
}

type guardedStore struct {
	rotation.Store
	b *countingBuilder
}

func (s *guardedStore) check(what string) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.use("store ("+what+")", s.b.closed)
}

func (s *guardedStore) Publish(ctx context.Context, req rotation.PublishRequest) error {
	if err := s.check("publish"); err != nil {
		return err
	}
	return s.Store.Publish(ctx, req)
}

func (s *guardedStore) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	if err := s.check("describe"); err != nil {
		return rotation.DescribeResponse{}, err
	}
	return s.Store.Describe(ctx, req)
}

func (s *guardedStore) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	if err := s.check("read"); err != nil {
		return rotation.Version{}, err
	}
	return s.Store.Read(ctx, req)
}

// tokenPolicies is a policies file of n token secrets on one files store.
func tokenPolicies(n int, extra string) string {
	var b strings.Builder
	b.WriteString("defaults: {grace: 1s, monitor: 0s, jitter: 0s}\nstores: [{name: local, files: {dir: s}}]\nsecrets:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: tok/t%03d, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t%03d.json}]}\n", i, i)
	}
	return b.String() + extra
}

// A reload while a run is in flight: the run keeps the target it was
// built with (its rotator is not released, the old generation's stores not
// closed) until it returns, and ends succeeded; then the old generation is
// closed. Each tick releases what it built, so nothing stays held.
func TestReloadKeepsInFlightRunsWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(tokenPolicies(1, "")), 0o600))
	dsn := pgtest.NewDatabase(t)
	db, err := state.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)

	var mu sync.Mutex
	var builders []*countingBuilder
	gate, entered := make(chan struct{}), make(chan string, 4)
	load := func(daemon.LoadRequest) (*daemon.Generation, error) {
		f, err := policy.Load(path)
		if err != nil {
			return nil, err
		}
		b := newCountingBuilder(t, f, filepath.Join(dir, "s"))
		mu.Lock()
		if len(builders) == 0 {
			b.gate, b.entered = gate, entered // the first generation's runs wait
		}
		builders = append(builders, b)
		mu.Unlock()
		return daemon.NewGeneration(f, b)
	}
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	d, err := daemon.New(runCtx, daemon.Config{
		DB: db, Engine: &rotation.Engine{DB: db, Key: key, Logger: slog.New(slog.DiscardHandler), Holder: "reload-test", LeaseTTL: time.Minute},
		Logger: slog.New(slog.DiscardHandler), Load: load, PoliciesPath: path, Watch: 20 * time.Millisecond,
		Listen: "127.0.0.1:0", Tick: "@every 1h", Shutdown: 10 * time.Second,
		Registry: prometheus.NewRegistry(), Ready: func(a string) { ready <- a },
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})

	// The first tick (at start) rotates the never-rotated secret; its
	// Generate waits at the gate.
	select {
	case id := <-entered:
		require.Equal(t, "tok/t000", id)
	case <-time.After(60 * time.Second):
		t.Fatal("no run started within 60s")
	}
	first := d.Generation()

	// Reload (the file changed) while the run waits.
	require.NoError(t, os.WriteFile(path, []byte(tokenPolicies(1, "# reloaded\n")), 0o600))
	require.Eventually(t, func() bool { return d.Generation() != first }, 60*time.Second, 10*time.Millisecond, "the file change was not reloaded")
	mu.Lock()
	old := builders[0]
	mu.Unlock()
	old.mu.Lock()
	require.False(t, old.closed, "the old generation was closed under a run in flight")
	require.False(t, old.releasedWhileGenerating, "the run's rotator was released under it")
	old.mu.Unlock()

	close(gate)
	require.Eventually(t, func() bool {
		s, err := db.Secret(ctx, "tok/t000")
		return err == nil && s.LastOutcome == state.RunSucceeded
	}, 60*time.Second, 20*time.Millisecond, "the run in flight did not succeed after the reload")
	s, err := db.Secret(ctx, "tok/t000")
	require.NoError(t, err)
	require.Equal(t, int64(1), s.CurrentVersion)
	require.FileExists(t, filepath.Join(dir, "s", "t000.json"))

	// Once the tick returned, its target is released and the old
	// generation closed.
	require.Eventually(t, func() bool {
		old.mu.Lock()
		defer old.mu.Unlock()
		return old.closed
	}, 60*time.Second, 10*time.Millisecond, "the old generation was not closed after its tick ended")
	old.mu.Lock()
	defer old.mu.Unlock()
	require.Empty(t, old.usedAfterRelease)
	require.False(t, old.closedWhileHeld, "the old generation was closed while a target it built was held")
	require.Zero(t, old.held, "a target of the tick was not released")
}

// The daemon holds no target per secret: its first round of
// published-credential checks over n secrets builds one target per check
// and releases it when the check ends, so at most --concurrency are held
// at once and none once the round is over (before, the generation kept
// all n, ~2 KB each: 213 MB live at 100,000 secrets).
func TestCheckRoundHoldsNoTargetPerSecret(t *testing.T) {
	t.Parallel()
	const n, concurrency = 200, 4
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(tokenPolicies(n, "")), 0o600))
	dsn := pgtest.NewDatabase(t)
	db, err := state.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	// Every secret rotated a day ago: no tick builds a target, only the
	// checks do.
	_, err = db.Pool().Exec(ctx, `INSERT INTO rotator_secrets (id, class, current_version, last_success_at, last_outcome)
		SELECT 'tok/t' || lpad(g::text, 3, '0'), 'admin_token', 1, now() - interval '1 day', 'succeeded'
		FROM generate_series(0, $1 - 1) g`, n)
	require.NoError(t, err)

	var b *countingBuilder
	ready := make(chan string, 1)
	runCtx, stop := context.WithCancel(ctx)
	d, err := daemon.New(runCtx, daemon.Config{
		DB: db, Engine: &rotation.Engine{DB: db, Logger: slog.New(slog.DiscardHandler), Holder: "checks-test"},
		Logger: slog.New(slog.DiscardHandler),
		Load: func(daemon.LoadRequest) (*daemon.Generation, error) {
			f, err := policy.Load(path)
			if err != nil {
				return nil, err
			}
			b = newCountingBuilder(t, f, filepath.Join(dir, "s"))
			return daemon.NewGeneration(f, b)
		},
		PoliciesPath: path, Listen: "127.0.0.1:0", Tick: "@every 1h", Shutdown: 10 * time.Second,
		TickCfg: rotation.TickConfig{Concurrency: concurrency}, Registry: prometheus.NewRegistry(), Ready: func(a string) { ready <- a },
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	require.Eventually(t, func() bool {
		built, held, _ := b.counts()
		return built == n && held == 0
	}, 60*time.Second, 10*time.Millisecond, "the first check round did not build and release one target per secret")
	built, held, maxHeld := b.counts()
	require.Equal(t, n, built, "one target per check")
	require.Zero(t, held, "no target is kept after its check")
	require.LessOrEqual(t, maxHeld, concurrency, "at most --concurrency targets at once")
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Empty(t, b.usedAfterRelease)
}
