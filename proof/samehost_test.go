package proof_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
)

const fencePolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: %s
    publish:
      - store: local
        path: db/postgres.json
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// cliWorld is the rotator CLI against a Postgres target and the files
// store, run as separate processes.
type cliWorld struct {
	t        *testing.T
	tg       *target
	dir      string
	env      []string
	stateDSN string
}

func newCLIWorld(t *testing.T, prefix, ttl string) *cliWorld {
	t.Helper()
	w := &cliWorld{t: t, tg: newTarget(t, prefix), dir: t.TempDir(), stateDSN: newStateDSN(t)}
	w.env = clitest.Setup(t, binary, w.dir, w.stateDSN, fmt.Sprintf(fencePolicy, w.tg.role),
		"ROTATOR_PG_ADMIN_DSN="+w.tg.dsn, "ROTATOR_LEASE_TTL="+ttl)
	for _, args := range [][]string{{"migrate"}, {"init", "--secret", "db/postgres"}} {
		out, code := w.run(nil, args...)
		require.Equal(t, 0, code, out)
	}
	return w
}

func (w *cliWorld) cmd(prefix, extra []string, args ...string) *exec.Cmd {
	argv := append(slices.Clone(prefix), binary)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = w.dir
	cmd.Env = append(slices.Clone(w.env), extra...)
	return cmd
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func (w *cliWorld) run(extra []string, args ...string) (string, int) {
	w.t.Helper()
	var buf bytes.Buffer
	cmd := w.cmd(nil, extra, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	code := exitCode(cmd.Run())
	return buf.String(), code
}

// published is what the files store holds as current.
func (w *cliWorld) published() cred {
	w.t.Helper()
	ew := &engineWorld{t: w.t, tg: w.tg, dir: filepath.Join(w.dir, "secrets")}
	return ew.publishedLogsIn("the published credential")
}

// statuses counts the runs of the secret by status.
func (w *cliWorld) statuses() map[string]int {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.stateDSN)
	require.NoError(w.t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT status, count(*) FROM rotator_runs GROUP BY 1`)
	require.NoError(w.t, err)
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(w.t, rows.Scan(&s, &n))
		out[s] = n
	}
	require.NoError(w.t, rows.Err())
	return out
}

// TestSameHostPIDOne: containers that share a host name and all run rotator
// as PID 1 (here: `unshare --pid --fork`, so each process is PID 1 in its
// own namespace, on the same host). Rounds of three concurrent `rotator
// run` of one secret: exactly one rotates, the others say busy (exit 5,
// "held by"), no run is rolled back, and the published credential logs in
// after every round. Needs root for unshare (the test fails otherwise).
func TestSameHostPIDOne(t *testing.T) {
	t.Parallel()
	if out, err := exec.Command("unshare", "--pid", "--fork", "sh", "-c", "echo $$").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("`unshare --pid --fork` does not work here (run the proof tests as root on Linux): %v %s", err, out)
	}
	w := newCLIWorld(t, "pid1", "10s")
	rounds := 4
	if full {
		rounds = 20
	}
	holder := regexp.MustCompile(`held by [^ ]+:1:[0-9a-f]+/[0-9a-f]+`)
	var rotated, busy int
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		type result struct {
			out  string
			code int
		}
		results := make([]result, 3)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf bytes.Buffer
				// Slow calls keep the winner inside its run while the
				// others start.
				cmd := w.cmd([]string{"unshare", "--pid", "--fork"}, []string{"ROTATOR_TEST_SLOW=300ms"}, "run", "--secret", "db/postgres")
				cmd.Stdout, cmd.Stderr = &buf, &buf
				code := exitCode(cmd.Run())
				results[i] = result{buf.String(), code}
			}()
		}
		wg.Wait()
		ok := 0
		for _, r := range results {
			switch r.code {
			case 0:
				ok++
				require.Contains(t, r.out, "db/postgres: rotated", "round %d", round)
			case 5:
				require.Regexp(t, holder, r.out, "round %d: busy names the holder (host, pid 1, nonce, run)", round)
				busy++
			default:
				t.Fatalf("round %d: exit %d:\n%s", round, r.code, r.out)
			}
		}
		require.Equal(t, 1, ok, "round %d: exactly one process rotates", round)
		rotated++
		c := w.published()
		require.Equal(t, []string{c.User}, w.tg.loginRoles(), "round %d: only the published role can log in", round)
	}
	st := w.statuses()
	require.Equal(t, map[string]int{"succeeded": rounds}, st, "no run rolled back or failed")
	t.Logf("%d rounds of 3 concurrent PID-1 processes: %d rotated, %d busy, 0 rolled back, published logs in after each (%s)",
		rounds, rotated, busy, time.Since(start).Round(time.Second))
	fmt.Fprintf(os.Stderr, "PROOF same-host-pid1: rounds=%d rotated=%d busy=%d rolled_back=0 published_logs_in=%d/%d\n", rounds, rotated, busy, rounds, rounds)
}

// TestPausedProcess: a `rotator run` stopped with SIGSTOP inside its
// re-key step (ROTATOR_TEST_SLOW holds it there) past its lease TTL;
// another run takes the lease, resumes and completes the rotation; then
// the stopped process continues (SIGCONT). It changes nothing at the
// target: it stops on its own (its lease is stale) or the target refuses
// its statement, and the published credential logs in.
func TestPausedProcess(t *testing.T) {
	t.Parallel()
	w := newCLIWorld(t, "pause", "2s")
	out, code := w.run(nil, "run", "--secret", "db/postgres")
	require.Equal(t, 0, code, out)
	first := w.published()

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.stateDSN)
	require.NoError(t, err)
	defer conn.Close(ctx)

	var aOut bytes.Buffer
	a := w.cmd(nil, []string{"ROTATOR_TEST_SLOW=1500ms"}, "run", "--secret", "db/postgres")
	a.Stdout, a.Stderr = &aOut, &aOut
	require.NoError(t, a.Start())
	aDone := make(chan error, 1)
	go func() { aDone <- a.Wait() }()
	// A is inside its generate step (journaled, not finished): stop it.
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM rotator_steps WHERE step = 'generate' AND finished_at IS NULL`).Scan(&n)
		return err == nil && n == 1
	}, 30*time.Second, 10*time.Millisecond, "A never started its generate step")
	require.NoError(t, a.Process.Signal(syscall.SIGSTOP))
	stopped := time.Now()
	// Past A's lease: it has expired.
	require.Eventually(t, func() bool {
		var expired bool
		err := conn.QueryRow(ctx, `SELECT expires_at < now() FROM rotator_leases WHERE secret_id = 'db/postgres'`).Scan(&expired)
		return err == nil && expired
	}, 30*time.Second, 20*time.Millisecond)

	// B resumes A's run and completes it.
	out, code = w.run(nil, "run", "--secret", "db/postgres")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "db/postgres: rotated")
	second := w.published()
	require.NotEqual(t, first.User, second.User)

	// A continues.
	require.NoError(t, a.Process.Signal(syscall.SIGCONT))
	paused := time.Since(stopped)
	var aErr error
	select {
	case aErr = <-aDone:
	case <-time.After(time.Minute):
		t.Fatal("A did not end after SIGCONT")
	}
	aCode := exitCode(aErr)
	require.NotEqual(t, 0, aCode, "the stale process does not report success:\n%s", aOut.String())
	require.Regexp(t, `lease|fence`, aOut.String())
	third := w.published()
	require.Equal(t, second, third)
	require.Equal(t, []string{second.User}, w.tg.loginRoles())
	st := w.statuses()
	require.Equal(t, map[string]int{"succeeded": 2}, st)
	why := "stopped itself (lease)"
	if strings.Contains(aOut.String(), "refused by the target's fence") {
		why = "refused by the target's fence"
	}
	t.Logf("A paused %s (TTL 2s); B completed; A exited %d: %s; published %s logs in", paused.Round(time.Millisecond), aCode, why, second.User)
	fmt.Fprintf(os.Stderr, "PROOF paused-process: paused=%s a_exit=%d a_outcome=%q published=%s logs_in=yes\n", paused.Round(time.Millisecond), aCode, why, second.User)
}
