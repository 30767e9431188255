package proof_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// How the load test's clients behave, and the verify setting that covers
// them (see docs/proof.md, "Live clients never fail").
const (
	clients         = 50
	clientRefresh   = 100 * time.Millisecond // a client re-reads the published file this often
	clientPause     = 10 * time.Millisecond  // between two connections of one client
	verifyDelay     = 500 * time.Millisecond // delay check: >= refresh + the slowest login, with margin
	loadRotations   = 10
	loadRotationsLn = 200
)

type loadResult struct {
	logins, failures int64
	firstErrors      []string
	rotations        int
	took             time.Duration
}

// runLoad rotates the secret n times while clients keep logging in with
// whatever the files store publishes.
func runLoad(t *testing.T, mode string, n int) loadResult {
	tg := newTarget(t, "load")
	w := newEngineWorld(t, tg, tg.dsn, mode)
	w.target.Checks = []rotation.Check{rotation.Delay{D: verifyDelay}}
	w.target.Poll = 25 * time.Millisecond

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var res loadResult
	var logins, failures atomic.Int64
	var mu sync.Mutex
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c cred
			var read time.Time
			for ctx.Err() == nil {
				if time.Since(read) >= clientRefresh {
					nc, err := w.readCred()
					require.NoError(t, err)
					c, read = nc, time.Now()
				}
				err := clientLogin(ctx, pgtest.UserDSN(tg.dsn, c.User, c.Password))
				if ctx.Err() != nil {
					return
				}
				logins.Add(1)
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if len(res.firstErrors) < 5 {
						res.firstErrors = append(res.firstErrors, c.User+": "+err.Error())
					}
					mu.Unlock()
				}
				time.Sleep(clientPause)
			}
		}()
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		r := w.run()
		require.Equal(t, state.RunSucceeded, r.Status, "rotation %d: %+v", i+1, r)
	}
	res.took = time.Since(start)
	time.Sleep(2 * clientRefresh)
	stop()
	wg.Wait()
	res.logins, res.failures, res.rotations = logins.Load(), failures.Load(), n
	return res
}

func clientLogin(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// TestLiveClients is the promise of the dual-key process: 50 clients that
// reconnect continuously with whatever credential the files store holds
// (re-read every 100ms) never fail a login while the blue/green pair is
// rotated again and again. The same load against single-role mode shows
// what that mode costs; its failures are reported, not asserted away.
func TestLiveClients(t *testing.T) {
	n := loadRotations
	if full {
		n = loadRotationsLn
	}
	// PROOF_ROTATIONS=N sets another size (docs/proof.md's 20-rotation rows).
	if v, err := strconv.Atoi(os.Getenv("PROOF_ROTATIONS")); err == nil && v > 0 {
		n = v
	}
	t.Run("blue_green", func(t *testing.T) {
		r := runLoad(t, policy.ModeBlueGreen, n)
		t.Logf("blue/green: %d rotations in %s, %d client logins, %d failed %q", r.rotations, r.took.Round(time.Millisecond), r.logins, r.failures, r.firstErrors)
		require.Zero(t, r.failures, "no client may fail a login with the published credential: %q", r.firstErrors)
		require.Greater(t, r.logins, int64(n*clients/2), "the clients kept logging in")
	})
	t.Run("single_role", func(t *testing.T) {
		r := runLoad(t, policy.ModeSingleRole, n)
		t.Logf("single-role: %d rotations in %s, %d client logins, %d failed (%.2f%%) %q", r.rotations, r.took.Round(time.Millisecond), r.logins, r.failures,
			100*float64(r.failures)/float64(max(r.logins, 1)), r.firstErrors)
	})
}
