package proof_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
)

// How the load test's clients behave, and the verify setting that covers
// them (see docs/proof.md, "Live clients never fail").
const (
	clients         = 50
	clientRefresh   = 100 * time.Millisecond // a client re-reads the published file this often
	clientPause     = 10 * time.Millisecond  // between two connections of one client
	loadRotations   = 10
	loadRotationsLn = 200
)

// loadPolicy is what a user writes: the files store (which the clients
// read) and AWS Secrets Manager (moto_server), one Postgres secret
// (mode blue_green or single_role), a delay check that covers the clients'
// refresh plus their slowest login (500ms was not enough on a loaded
// 2-core machine; see docs/proof.md), no monitor window.
const loadPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
  - name: aws
    awssm:
      region: us-east-1
      endpoint: %s
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: %s
        mode: %s
    publish:
      - store: local
        path: db/postgres.json
      - store: aws
        path: proof/load/db/postgres
    checks:
      - delay: 2s
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

type loadResult struct {
	logins, failures int64
	firstErrors      []string
	rotations        int
	took             time.Duration
}

// loadBinary is the CLI the load test runs: the one built for this test
// run, or PROOF_BINARY (another build, e.g. of an earlier commit, to
// measure it the same way).
func loadBinary() string {
	if b := os.Getenv("PROOF_BINARY"); b != "" {
		return b
	}
	return binary
}

// runLoad rotates the secret n times with `rotator run --secret
// db/postgres`, as a user would, while clients keep logging in with
// whatever the files store publishes.
func runLoad(t *testing.T, mode string, n int) loadResult {
	tg := newTarget(t, "load")
	moto := mototest.New(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(fmt.Sprintf(loadPolicy, moto.URL, tg.role, mode)), 0o600))
	bin := loadBinary()
	key, err := exec.Command(bin, "keygen").Output()
	require.NoError(t, err)
	env := append(os.Environ(), "DATABASE_URL="+newStateDSN(t), "ROTATOR_PG_ADMIN_DSN="+tg.dsn,
		"ROTATOR_STATE_KEY="+strings.TrimSpace(string(key)), "ROTATOR_POLICIES=", "ROTATOR_LOG_FORMAT=json",
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "rotator %v:\n%s", args, out)
		return string(out)
	}
	cli("migrate")
	if mode == policy.ModeBlueGreen {
		cli("init", "--secret", "db/postgres")
	}
	readCred := func() (cred, error) {
		b, err := os.ReadFile(filepath.Join(dir, "secrets", "db/postgres.json"))
		if errors.Is(err, os.ErrNotExist) {
			return cred{User: tg.role, Password: tg.initial}, nil
		}
		if err != nil {
			return cred{}, err
		}
		var c cred
		err = json.Unmarshal(b, &c)
		return c, err
	}

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
					nc, err := readCred()
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
		out := cli("run", "--secret", "db/postgres")
		require.Contains(t, out, "db/postgres: rotated", "rotation %d", i+1)
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
// rotated again and again by `rotator run` with a policies file (nothing a
// user cannot set). The same load against single-role mode shows what
// that mode costs; its failures are reported per rotation, not asserted
// away.
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
		t.Logf("blue/green: %d rotations in %s (%s each), %d client logins, %d failed %q", r.rotations, r.took.Round(time.Millisecond),
			(r.took / time.Duration(n)).Round(time.Millisecond), r.logins, r.failures, r.firstErrors)
		require.Zero(t, r.failures, "no client may fail a login with the published credential: %q", r.firstErrors)
		require.Greater(t, r.logins, int64(n*clients/2), "the clients kept logging in")
	})
	t.Run("single_role", func(t *testing.T) {
		r := runLoad(t, policy.ModeSingleRole, n)
		t.Logf("single-role: %d rotations in %s (%s each), %d client logins, %d failed (%.2f%%, %.1f per rotation) %q", r.rotations, r.took.Round(time.Millisecond),
			(r.took / time.Duration(n)).Round(time.Millisecond), r.logins, r.failures,
			100*float64(r.failures)/float64(max(r.logins, 1)), float64(r.failures)/float64(n), r.firstErrors)
	})
}
