package proof_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
)

const crashPolicy = `version: 1
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
    publish:
      - store: local
        path: db/postgres.json
      - store: aws
        path: proof/db/postgres
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// crashWorld is the rotator CLI against a Postgres target, the files store
// and the AWS store on moto_server.
type crashWorld struct {
	t        *testing.T
	tg       *target
	dir      string
	env      []string
	stateDSN string
	sm       *secretsmanager.Client
}

func newCrashWorld(t *testing.T) *crashWorld {
	t.Helper()
	moto := mototest.New(t)
	w := &crashWorld{t: t, tg: newTarget(t, "crash"), dir: t.TempDir(), stateDSN: newStateDSN(t)}
	w.sm = secretsmanager.NewFromConfig(moto.AWSConfig())
	require.NoError(t, os.WriteFile(filepath.Join(w.dir, "policies.yaml"),
		[]byte(fmt.Sprintf(crashPolicy, moto.URL, w.tg.role)), 0o600))
	key, err := exec.Command(binary, "keygen").Output()
	require.NoError(t, err)
	w.env = append(os.Environ(),
		"DATABASE_URL="+w.stateDSN, "ROTATOR_PG_ADMIN_DSN="+w.tg.dsn,
		"ROTATOR_STATE_KEY="+strings.TrimSpace(string(key)), "ROTATOR_POLICIES=", "ROTATOR_LOG_FORMAT=json",
		"ROTATOR_LEASE_TTL=1s", // a killed process's lease frees itself after 1s
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true")
	for _, args := range [][]string{{"migrate"}, {"init", "--secret", "db/postgres"}} {
		out, code := w.cli(nil, args...)
		require.Equal(t, 0, code, out)
	}
	return w
}

func (w *crashWorld) cmd(extra []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Dir = w.dir
	cmd.Env = append(slices.Clone(w.env), extra...)
	return cmd
}

func (w *crashWorld) cli(extra []string, args ...string) (string, int) {
	w.t.Helper()
	var buf bytes.Buffer
	cmd := w.cmd(extra, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return buf.String(), ee.ExitCode()
	}
	require.NoError(w.t, err)
	return buf.String(), 0
}

// resume runs `rotator run` until it is no longer told the secret is busy
// (the killed process's lease expires after ROTATOR_LEASE_TTL).
func (w *crashWorld) resume() string {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := w.cli(nil, "run", "--secret", "db/postgres")
		if code == 5 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		require.Equal(w.t, 0, code, "the interrupted run resumes and completes:\n%s", out)
		require.Contains(w.t, out, "db/postgres: rotated")
		return out
	}
}

// published is what one store holds: user and password per version label.
type published struct {
	store string
	label string
	user  string
	pw    string
	run   string
}

func (w *crashWorld) filesVersions() []published {
	var out []published
	for label, name := range map[string]string{"current": "db/postgres.json", "previous": "db/postgres.json.previous"} {
		b, err := os.ReadFile(filepath.Join(w.dir, "secrets", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(w.t, err)
		var d map[string]string
		require.NoError(w.t, json.Unmarshal(b, &d), name)
		out = append(out, published{"files", label, d["username"], d["password"], d["run_id"]})
	}
	return out
}

// awsVersions reads each label with VersionStage: moto may answer a read
// without it with a stale version after UpdateSecretVersionStage.
func (w *crashWorld) awsVersions() []published {
	ctx := context.Background()
	var out []published
	for _, label := range []string{"AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"} {
		v, err := w.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
			SecretId: aws.String("proof/db/postgres"), VersionStage: aws.String(label)})
		if err != nil {
			if strings.Contains(err.Error(), "ResourceNotFoundException") {
				continue
			}
			require.NoError(w.t, err)
		}
		var d map[string]string
		require.NoError(w.t, json.Unmarshal([]byte(aws.ToString(v.SecretString)), &d))
		out = append(out, published{"aws", label, d["username"], d["password"], d["run_id"]})
	}
	return out
}

// activeRunUser is the role the unfinished run (if any) journaled as new.
func (w *crashWorld) activeRunUser() string {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.stateDSN)
	require.NoError(w.t, err)
	defer conn.Close(ctx)
	var u string
	err = conn.QueryRow(ctx, `SELECT coalesce(new_meta->>'username','') FROM rotator_runs
		WHERE secret_id = 'db/postgres' AND status IN ('running','waiting')`).Scan(&u)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(w.t, err)
	return u
}

// checkCrashed checks the state a kill left: what every store publishes as
// current logs in, and every role that can log in is one a store holds
// (or the new role of the unfinished run, journaled before it was made,
// which the resumed run publishes or discards).
func (w *crashWorld) checkCrashed(point string) {
	w.t.Helper()
	versions := append(w.filesVersions(), w.awsVersions()...)
	known := map[string]bool{}
	anyCurrent := false
	for _, v := range versions {
		known[v.user] = true
		if v.label == "current" || v.label == "AWSCURRENT" {
			anyCurrent = true
			require.NoError(w.t, w.tg.login(v.user, v.pw), "%s: %s publishes %s as current and it must log in", point, v.store, v.user)
		}
	}
	if !anyCurrent {
		require.NoError(w.t, w.tg.login(w.tg.role, w.tg.initial), "%s: nothing published yet: the original credential must log in", point)
	}
	known[w.tg.role] = true // what clients used before the first publish
	inflight := w.activeRunUser()
	for _, r := range w.tg.loginRoles() {
		if !known[r] {
			require.Equal(w.t, inflight, r, "%s: role %s can log in but no store holds it and no unfinished run owns it", point, r)
		}
	}
}

// checkSettled checks the state after a completed run: both stores publish
// the same version as current, it logs in, it is the only role that can,
// and no pending version is left.
func (w *crashWorld) checkSettled(point string) {
	w.t.Helper()
	var cur []published
	for _, v := range append(w.filesVersions(), w.awsVersions()...) {
		switch v.label {
		case "current", "AWSCURRENT":
			cur = append(cur, v)
		case "AWSPENDING":
			w.t.Fatalf("%s: a pending version (run %s, %s) remains after the run completed", point, v.run, v.user)
		}
	}
	require.Len(w.t, cur, 2, point)
	require.Equal(w.t, cur[0].run, cur[1].run, "%s: the stores publish different versions", point)
	require.Equal(w.t, cur[0].pw, cur[1].pw, point)
	require.NoError(w.t, w.tg.login(cur[0].user, cur[0].pw), "%s: the published credential logs in", point)
	require.Equal(w.t, []string{cur[0].user}, w.tg.loginRoles(), "%s: only the published role can log in", point)
	require.Equal(w.t, "", w.activeRunUser(), point)
	// AWS keeps no version staged (no AWSPENDING on any version).
	d, err := w.sm.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: aws.String("proof/db/postgres")})
	require.NoError(w.t, err)
	for id, labels := range d.VersionIdsToStages {
		require.NotContains(w.t, labels, "AWSPENDING", "%s: version %s is still pending", point, id)
	}
}

// killAt starts `rotator run` with extra env, waits for stop(), kills it
// with SIGKILL and reports whether it was still running (killed) then.
func (w *crashWorld) killAt(extra []string, stop func(stderr *bufio.Reader, started time.Time)) bool {
	w.t.Helper()
	cmd := w.cmd(extra, "run", "--secret", "db/postgres")
	pr, pw, err := os.Pipe()
	require.NoError(w.t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(w.t, cmd.Start())
	_ = pw.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r := bufio.NewReader(pr)
	stop(r, time.Now())
	killed := false
	select {
	case <-exited:
	default:
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	_ = pr.Close()
	return killed
}

// TestCrashAnywhere kills the rotator process with SIGKILL at every step
// boundary (before and after each journaled action) and at random moments
// inside steps (ROTATOR_TEST_SLOW stretches every rotator and store call),
// then checks the state it left and that the next `rotator run` resumes
// and completes. Each point is one rotation; the pair alternates.
func TestCrashAnywhere(t *testing.T) {
	t.Parallel()
	w := newCrashWorld(t)
	random := 8
	if full {
		random = 50
	}

	// A clean run with the slow knob measures how long a rotation takes.
	start := time.Now()
	out, code := w.cli([]string{"ROTATOR_TEST_SLOW=20ms"}, "run", "--secret", "db/postgres")
	require.Equal(t, 0, code, out)
	span := time.Since(start)
	w.checkSettled("clean run")
	t.Logf("a rotation with ROTATOR_TEST_SLOW=20ms takes %s (process start included)", span)

	var points []string
	for _, step := range []string{"generate", "stage", "publish", "retire", "monitor"} {
		for _, when := range []string{"before", "after"} {
			points = append(points, "pause:"+when+":"+step)
		}
	}
	kills := 0
	for _, p := range points {
		killed := w.killAt([]string{"ROTATOR_TEST_FAULT=" + p}, func(r *bufio.Reader, _ time.Time) {
			for {
				line, err := r.ReadString('\n')
				require.NoError(t, err, "%s: the process ended before reaching the point", p)
				if strings.HasPrefix(line, "ROTATOR_TEST_FAULT pause ") {
					return
				}
			}
		})
		require.True(t, killed, p)
		kills++
		w.checkCrashed(p)
		w.resume()
		w.checkSettled(p)
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	for i := 0; i < random; {
		at := time.Duration(rnd.Int64N(int64(span)))
		name := fmt.Sprintf("random kill %d at %s", i+1, at.Round(time.Millisecond))
		killed := w.killAt([]string{"ROTATOR_TEST_SLOW=20ms"}, func(r *bufio.Reader, started time.Time) {
			go func() { _, _ = r.WriteTo(discard{}) }()
			time.Sleep(time.Until(started.Add(at)))
		})
		if !killed {
			w.checkSettled(name + " (finished before the kill)")
			continue
		}
		i++
		kills++
		w.checkCrashed(name)
		w.resume()
		w.checkSettled(name)
	}
	t.Logf("%d SIGKILLs (%d step boundaries, %d random points); every one resumed and completed", kills, len(points), random)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
