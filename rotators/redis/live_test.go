package redis_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/syncbuf"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

// TestLiveClients: clients authenticate continuously with what the files
// store publishes (each re-reads it every 50 ms and opens a new
// connection with it: AUTH + PING) while the real engine, on a real state
// database, runs rotations of a Redis user one after another (each
// waiting out its delay check, then retiring the old password). No AUTH
// may fail; every password a run retired is refused afterwards; no
// plaintext reaches the logs, the events or the state database.
// ROTATIONS sets the number of rotations (default 30).
func TestLiveClients(t *testing.T) {
	rotations := 30
	if s := os.Getenv("ROTATIONS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		rotations = n
	}
	const storePath = "cache/redis.json"
	const secretID = "cache/redis"
	ctx := context.Background()
	su := superuser(t)
	user, initPW := newUser(t, su)

	stateDSN := pgtest.NewDatabase(t)
	db, err := state.Open(ctx, stateDSN)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	keyText, err := seal.Generate(nil)
	require.NoError(t, err)
	key, err := seal.Parse(keyText)
	require.NoError(t, err)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "", files.WithLogger(logger))
	require.NoError(t, err)
	r := newRotator(t, user, "redis://"+redisAddr+"/0", withLogger(logger))
	var evMu sync.Mutex
	var events []notify.Event
	engine := &rotation.Engine{DB: db, Key: key, Logger: logger, Holder: "test-" + t.Name(), LeaseTTL: 30 * time.Second,
		Events: func(ev notify.Event) { evMu.Lock(); events = append(events, ev); evMu.Unlock() }}
	target := rotation.Target{
		ID: secretID, Class: "database", Rotator: r,
		Publish: []rotation.Publication{{StoreName: "local", Path: storePath, Store: store}},
		// The clients re-read the store every 50 ms; a login takes a
		// few ms (more on a loaded machine): 500 ms covers both.
		Checks: []rotation.Check{rotation.Delay{D: 500 * time.Millisecond}},
		Grace:  time.Minute, OnTimeout: "hold", Monitor: 0,
		Retry: rotation.Retry{Attempts: 3, Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		Poll:  20 * time.Millisecond,
	}
	run := func() rotation.Result {
		t.Helper()
		res, err := engine.Run(ctx, target, rotation.Options{Wait: true})
		require.NoError(t, err)
		require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
		return res
	}

	// The first rotation replaces the user's one password (which nothing
	// publishes yet); the clients start from what it published.
	run()
	require.True(t, isWrongPass(login(user, initPW)), "the first rotation retires the password it replaced")

	var logins, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pw string
			var read time.Time
			for {
				select {
				case <-stop:
					return
				default:
				}
				if time.Since(read) >= 50*time.Millisecond {
					v, err := store.Read(ctx, rotation.ReadRequest{Path: storePath})
					if err == nil {
						pw, read = v.Credential.Secret.Reveal(), time.Now()
					}
				}
				logins.Add(1)
				if err := login(user, pw); err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	var published []string
	start := time.Now()
	for i := 0; i < rotations; i++ {
		before, err := store.Read(ctx, rotation.ReadRequest{Path: storePath})
		require.NoError(t, err)
		published = append(published, before.Credential.Secret.Reveal())
		run()
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()

	cur, err := store.Read(ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(t, err)
	require.NoError(t, login(user, cur.Credential.Secret.Reveal()))
	for i, pw := range published {
		require.True(t, isWrongPass(login(user, pw)), "the password of version %d, retired, must be refused", i+1)
	}
	require.Len(t, passwords(t, su, user), 1, "after each run only the published password is on the user")
	t.Logf("redis live clients: %d rotations, %.2f s per rotation, %d logins, %d failed", rotations, elapsed.Seconds()/float64(rotations), logins.Load(), failed.Load())
	require.Zero(t, failed.Load(), "failed logins: %v", first(failures, 5))
	require.Greater(t, logins.Load(), int64(rotations*10), "the clients did log in throughout")

	// Rollback: the previous password (retired) is re-added by its hash
	// from what the store still holds, and published again; a second
	// rollback changes nothing.
	rb, err := engine.Rollback(ctx, target)
	require.NoError(t, err)
	require.False(t, rb.Already)
	back, err := store.Read(ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(t, err)
	require.Equal(t, published[len(published)-1], back.Credential.Secret.Reveal(), "the store publishes the previous version again")
	require.NoError(t, login(user, back.Credential.Secret.Reveal()), "the restored password logs in")
	require.NoError(t, login(user, cur.Credential.Secret.Reveal()), "the rolled-away password stays valid for the clients that hold it")
	rb, err = engine.Rollback(ctx, target)
	require.NoError(t, err)
	require.True(t, rb.Already, "%+v", rb)
	// The next rotation replaces the restored password.
	run()
	next, err := store.Read(ctx, rotation.ReadRequest{Path: storePath})
	require.NoError(t, err)
	require.NoError(t, login(user, next.Credential.Secret.Reveal()))
	require.True(t, isWrongPass(login(user, back.Credential.Secret.Reveal())))
	all := append(published, cur.Credential.Secret.Reveal(), next.Credential.Secret.Reveal(), initPW)

	// No plaintext in the logs, the events or the state database.
	dump, err := exec.Command("pg_dump", "--data-only", stateDSN).CombinedOutput()
	require.NoError(t, err, string(dump))
	require.Contains(t, string(dump), secretID)
	evMu.Lock()
	evs, _ := json.Marshal(events)
	evMu.Unlock()
	for _, out := range []string{logs.String(), string(dump), string(evs)} {
		for _, pw := range all {
			require.NotContains(t, out, pw, "a plaintext password leaked")
		}
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
