package proof_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
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

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/state"
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

// crashSharedPolicy is the shared-path layout: db/postgres owns the fields
// db_password and database_url (a DSN derived from the credential) of one
// JSON document in the files store and of one AWS secret; a person owns
// telegram_token of both.
const crashSharedPolicy = `version: 1
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
        connection: {host: %s, port: "%s", database: %s, sslmode: disable}
    publish:
      - store: local
        path: app/prod.json
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
        fields: {password: db_password, url: database_url}
      - store: aws
        path: proof/app/prod
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
        fields: {password: db_password, url: database_url}
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// The shared documents and the metadata field of db/postgres in them.
const (
	sharedFilesDoc = "app/prod.json"
	sharedAWSDoc   = "proof/app/prod"
	sharedMeta     = "rotator.db.postgres"
)

// crashWorld is the rotator CLI against a Postgres target, the files store
// and the AWS store on moto_server. With shared, db/postgres publishes
// into fields of documents a person writes too (crashSharedPolicy).
type crashWorld struct {
	t        *testing.T
	tg       *target // the Postgres target (nil for another kind)
	kind     crashKind
	id       string // the secret: files path <id>.json, AWS secret proof/<id>
	dir      string
	env      []string
	stateDSN string
	sm       *secretsmanager.Client
	motoURL  string
	shared   bool

	// person is the value the person last wrote into telegram_token of
	// both shared documents.
	person string
	// settled are the versions current after each completed run, oldest
	// first: the last is what was really current before the next run.
	settled []published
	// seen holds every run id and password a completed run published.
	seen map[string]bool
}

func newCrashWorld(t *testing.T, shared bool) *crashWorld {
	t.Helper()
	moto := mototest.New(t)
	prefix := "crash"
	if shared {
		prefix = "crashsh"
	}
	w := &crashWorld{t: t, tg: newTarget(t, prefix), id: "db/postgres", dir: t.TempDir(), stateDSN: newStateDSN(t), shared: shared, seen: map[string]bool{}}
	w.kind = pgKind{w.tg}
	w.sm = secretsmanager.NewFromConfig(moto.AWSConfig())
	w.motoURL = moto.URL
	policy := fmt.Sprintf(crashPolicy, moto.URL, w.tg.role)
	if shared {
		u, err := url.Parse(w.tg.dsn)
		require.NoError(t, err)
		policy = fmt.Sprintf(crashSharedPolicy, moto.URL, w.tg.role, u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"))
		// The application's documents exist before rotator, with a
		// field of the person's.
		w.person = "tg-0"
		require.NoError(t, os.MkdirAll(filepath.Join(w.dir, "secrets", "app"), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(w.dir, "secrets", sharedFilesDoc), []byte(`{"telegram_token":"tg-0"}`), 0o600))
		_, err = w.sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String(sharedAWSDoc),
			SecretString: aws.String(`{"telegram_token":"tg-0"}`)})
		require.NoError(t, err)
	}
	w.start(policy, true, "ROTATOR_PG_ADMIN_DSN="+w.tg.dsn)
	return w
}

// start writes the policy, runs `rotator migrate` and, with init,
// `rotator init` for the secret; env is the kind's (its admin DSN).
func (w *crashWorld) start(policy string, init bool, env ...string) {
	w.t.Helper()
	w.env = clitest.Setup(w.t, binary, w.dir, w.stateDSN, policy,
		append(append(env,
			"ROTATOR_LEASE_TTL=1s", // a killed process's lease frees itself after 1s
		), clitest.AWSEnv...)...)
	cmds := [][]string{{"migrate"}}
	if init {
		cmds = append(cmds, []string{"init", "--secret", w.id})
	}
	for _, args := range cmds {
		out, code := w.cli(nil, args...)
		require.Equal(w.t, 0, code, out)
	}
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
		out, code := w.cli(nil, "run", "--secret", w.id)
		if code == 5 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		require.Equal(w.t, 0, code, "the interrupted run resumes and completes:\n%s", out)
		require.Contains(w.t, out, w.id+": rotated")
		return out
	}
}

// published is what one store holds: user and password per version label
// (and, in a shared document, the derived url).
type published struct {
	store string
	label string
	user  string
	pw    string
	run   string
	url   string
}

func (w *crashWorld) versions() []published {
	if w.shared {
		return append(w.sharedVersions("files", w.filesDoc()), w.sharedVersions("aws", w.awsDoc())...)
	}
	return append(w.filesVersions(), w.awsVersions()...)
}

func (w *crashWorld) filesVersions() []published {
	var out []published
	for label, name := range map[string]string{"current": w.id + ".json", "previous": w.id + ".json.previous"} {
		b, err := os.ReadFile(filepath.Join(w.dir, "secrets", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(w.t, err)
		var d map[string]string
		require.NoError(w.t, json.Unmarshal(b, &d), name)
		out = append(out, published{"files", label, d["username"], d["password"], d["run_id"], ""})
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
			SecretId: aws.String("proof/" + w.id), VersionStage: aws.String(label)})
		if err != nil {
			if strings.Contains(err.Error(), "ResourceNotFoundException") {
				continue
			}
			require.NoError(w.t, err)
		}
		var d map[string]string
		require.NoError(w.t, json.Unmarshal([]byte(aws.ToString(v.SecretString)), &d))
		out = append(out, published{"aws", label, d["username"], d["password"], d["run_id"], ""})
	}
	return out
}

// filesDoc is the shared JSON document of the files store.
func (w *crashWorld) filesDoc() map[string]string {
	b, err := os.ReadFile(filepath.Join(w.dir, "secrets", sharedFilesDoc))
	require.NoError(w.t, err)
	var d map[string]string
	require.NoError(w.t, json.Unmarshal(b, &d))
	return d
}

// awsDoc is the shared AWS secret's AWSCURRENT version and its id.
func (w *crashWorld) awsDocID() (map[string]string, string) {
	v, err := w.sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(sharedAWSDoc), VersionStage: aws.String("AWSCURRENT")})
	require.NoError(w.t, err)
	var d map[string]string
	require.NoError(w.t, json.Unmarshal([]byte(aws.ToString(v.SecretString)), &d))
	return d, aws.ToString(v.VersionId)
}

func (w *crashWorld) awsDoc() map[string]string {
	d, _ := w.awsDocID()
	return d
}

// sharedVersions reads db/postgres's current version (the owned fields and
// the metadata's current) and previous version (whole, in the metadata
// field) from a shared document.
func (w *crashWorld) sharedVersions(store string, doc map[string]string) []published {
	require.Equal(w.t, w.person, doc["telegram_token"], "%s: the person's field is untouched", store)
	raw, ok := doc[sharedMeta]
	if !ok {
		require.NotContains(w.t, doc, "db_password", "%s: an owned field without metadata", store)
		return nil
	}
	var g struct {
		Current  map[string]string `json:"current"`
		Previous map[string]string `json:"previous"`
	}
	require.NoError(w.t, json.Unmarshal([]byte(raw), &g), store)
	out := []published{{store, "current", g.Current["username"], doc["db_password"], g.Current["run_id"], doc["database_url"]}}
	if g.Previous != nil {
		out = append(out, published{store, "previous", g.Previous["username"], g.Previous["password"], g.Previous["run_id"], g.Previous["url"]})
	}
	return out
}

// personWrites changes telegram_token of both shared documents, as a
// person does: the file rewritten by an editor; on AWS a new version made
// current (labelled first and AWSCURRENT moved, see docs/decisions.md on
// moto and AWSCURRENT).
func (w *crashWorld) personWrites(value string) {
	w.t.Helper()
	ctx := context.Background()
	d := w.filesDoc()
	d["telegram_token"] = value
	b, err := json.Marshal(d)
	require.NoError(w.t, err)
	require.NoError(w.t, os.WriteFile(filepath.Join(w.dir, "secrets", sharedFilesDoc), b, 0o600))
	d, cur := w.awsDocID()
	d["telegram_token"] = value
	b, err = json.Marshal(d)
	require.NoError(w.t, err)
	po, err := w.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(sharedAWSDoc),
		SecretString: aws.String(string(b)), VersionStages: []string{"PERSON"}})
	require.NoError(w.t, err)
	_, err = w.sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String(sharedAWSDoc),
		VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: po.VersionId, RemoveFromVersionId: aws.String(cur)})
	require.NoError(w.t, err)
	w.person = value
}

// loginURL connects with a published DSN and queries, as the application
// reading DATABASE_URL does; the DSN must name the version's user and
// password.
func (w *crashWorld) loginURL(point string, v published) {
	w.t.Helper()
	u, err := url.Parse(v.url)
	require.NoError(w.t, err, "%s: %s %s url", point, v.store, v.label)
	pw, _ := u.User.Password()
	require.True(w.t, u.User.Username() == v.user && pw == v.pw, "%s: %s %s url holds another version than its password", point, v.store, v.label)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, v.url)
	require.NoError(w.t, err, "%s: %s publishes a url as current and it must log in", point, v.store)
	defer conn.Close(ctx)
	var n int
	require.NoError(w.t, conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n), point)
}

// activeRun is the id of the unfinished run (if any) and the credential
// it journaled as new (as the kind names it, see crashKind.runIdent).
func (w *crashWorld) activeRun() (id, ident string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.stateDSN)
	require.NoError(w.t, err)
	defer conn.Close(ctx)
	var user, keyID string
	err = conn.QueryRow(ctx, `SELECT id, coalesce(new_meta->>'username',''), coalesce(new_meta->>'key_id','') FROM rotator_runs
		WHERE secret_id = $1 AND status IN ('running','waiting')`, w.id).Scan(&id, &user, &keyID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ""
	}
	require.NoError(w.t, err)
	if user == "" && keyID == "" {
		return id, "" // nothing generated yet
	}
	return id, w.kind.runIdent(user, keyID)
}

func (w *crashWorld) activeRunUser() string {
	_, u := w.activeRun()
	return u
}

// lastSettled is the version the n-th last completed run made current
// (n = 1: the last); the zero value when there is none.
func (w *crashWorld) lastSettled(n int) published {
	if len(w.settled) < n {
		return published{}
	}
	return w.settled[len(w.settled)-n]
}

// checkPrevious checks, in a shared document, that the secret's previous
// per-field version is the last version that was really current before
// the store's current one: for a store still on the last completed
// version, the one before it; for a store the unfinished run already
// published to, the last completed version.
func (w *crashWorld) checkPrevious(point string, versions []published) {
	w.t.Helper()
	byStore := map[string]map[string]published{}
	for _, v := range versions {
		if byStore[v.store] == nil {
			byStore[v.store] = map[string]published{}
		}
		byStore[v.store][v.label] = v
	}
	inflight, _ := w.activeRun()
	for _, store := range []string{"files", "aws"} {
		cur, prev := byStore[store]["current"], byStore[store]["previous"]
		want := w.lastSettled(2)
		if cur.run != w.lastSettled(1).run {
			require.Equal(w.t, inflight, cur.run, "%s: %s's current version is neither the last completed one nor the unfinished run's", point, store)
			want = w.lastSettled(1)
		}
		require.Equal(w.t, want.run, prev.run, "%s: %s's previous fields are not the last really-current version", point, store)
		require.Equal(w.t, want.user, prev.user, point)
		require.Equal(w.t, want.pw, prev.pw, "%s: %s's previous password", point, store)
		require.Equal(w.t, want.url, prev.url, "%s: %s's previous url", point, store)
	}
}

// checkCrashed checks the state a kill left: what every store publishes as
// current logs in, and every role (Redis: password) that can log in is one
// a store holds (or the new one of the unfinished run, journaled before it
// was made, which the resumed run publishes or discards).
func (w *crashWorld) checkCrashed(point string) {
	w.t.Helper()
	versions := w.versions()
	known := map[string]bool{}
	anyCurrent := false
	for _, v := range versions {
		known[w.kind.ident(v.user, v.pw)] = true
		if v.label == "current" || v.label == "AWSCURRENT" {
			anyCurrent = true
			require.NoError(w.t, w.kind.login(v.user, v.pw), "%s: %s publishes %s as current and it must log in", point, v.store, v.user)
			if w.shared {
				w.loginURL(point, v)
			}
		}
	}
	if w.shared {
		w.checkPrevious(point, versions)
	}
	if user, pw, ok := w.kind.original(); ok {
		if !anyCurrent {
			require.NoError(w.t, w.kind.login(user, pw), "%s: nothing published yet: the original credential must log in", point)
		}
		known[w.kind.ident(user, pw)] = true // what clients used before the first publish
	}
	run, inflight := w.activeRun()
	for _, r := range w.kind.live() {
		if !known[r] && (run == "" || r != w.kind.pending(run)) {
			require.Equal(w.t, inflight, r, "%s: %s can log in but no store holds it and no unfinished run owns it", point, r)
		}
	}
}

// checkSettled checks the state after a completed run: both stores publish
// the same version as current, it logs in, it is the only role that can,
// no pending version is left, and neither its run id nor its password was
// published before (no version reused). In shared documents the url logs
// in too, the previous fields are the version current before the run and
// the person's field is untouched.
func (w *crashWorld) checkSettled(point string) {
	w.t.Helper()
	var cur []published
	versions := w.versions()
	for _, v := range versions {
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
	require.NoError(w.t, w.kind.login(cur[0].user, cur[0].pw), "%s: the published credential logs in", point)
	require.Equal(w.t, []string{w.kind.ident(cur[0].user, cur[0].pw)}, w.kind.live(), "%s: only the published role (Redis: password) can log in", point)
	for _, v := range versions {
		if w.kind.ident(v.user, v.pw) != w.kind.ident(cur[0].user, cur[0].pw) {
			require.Error(w.t, w.kind.login(v.user, v.pw), "%s: %s's %s credential (%s) is retired and must be refused", point, v.store, v.label, v.user)
		}
	}
	require.Equal(w.t, "", w.activeRunUser(), point)
	require.False(w.t, w.seen[cur[0].run] || w.seen[cur[0].pw], "%s: the completed run published a version published before", point)
	w.seen[cur[0].run], w.seen[cur[0].pw] = true, true
	w.settled = append(w.settled, cur[0])
	if w.shared {
		require.Equal(w.t, cur[0].url, cur[1].url, "%s: the stores publish different urls", point)
		w.loginURL(point, cur[0])
		w.checkPrevious(point, versions)
	}
	// AWS keeps no version staged (no AWSPENDING on any version).
	awsPath := "proof/" + w.id
	if w.shared {
		awsPath = sharedAWSDoc
	}
	d, err := w.sm.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(awsPath)})
	require.NoError(w.t, err)
	for id, labels := range d.VersionIdsToStages {
		require.NotContains(w.t, labels, "AWSPENDING", "%s: version %s is still pending", point, id)
	}
}

// killAt starts `rotator run` with extra env, waits for stop(), kills it
// with SIGKILL and reports whether it was still running (killed) then.
func (w *crashWorld) killAt(extra []string, stop func(stderr *bufio.Reader, started time.Time)) bool {
	w.t.Helper()
	cmd := w.cmd(extra, "run", "--secret", w.id)
	return killRun(w.t, cmd, stop)
}

// stepBoundaries are the crash points at every step boundary:
// ROTATOR_TEST_FAULT=pause:before|after:STEP for each step.
func stepBoundaries() []string {
	var points []string
	for _, step := range []state.Step{state.StepGenerate, state.StepStage, state.StepPublish, state.StepRetire, state.StepMonitor} {
		for _, when := range []string{"before", "after"} {
			points = append(points, "pause:"+when+":"+string(step))
		}
	}
	return points
}

// killRun starts cmd with its output on a pipe, calls stop with that
// output (stop returns when it is time to kill), kills cmd with SIGKILL
// if it still runs and reports whether it was killed then (not exited
// on its own before).
func killRun(t *testing.T, cmd *exec.Cmd, stop func(out *bufio.Reader, started time.Time)) bool {
	t.Helper()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	_ = pw.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop(bufio.NewReader(pr), time.Now())
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
	random := 8
	if full {
		random = 50
	}
	crashAnywhere(t, newCrashWorld(t, false), random)
}

// TestCrashAnywhereSharedPath is TestCrashAnywhere with a secret that owns
// fields of shared documents (crashSharedPolicy): the password and a DSN
// derived from it in a files JSON document and an AWS secret, beside a
// field a person writes before every point. After every kill and every
// resume it also checks that the url logs in, the person's field is
// untouched and the secret's previous fields are the last really-current
// version. Every step boundary, fewer random points than the whole-path
// case (the same code paths under the engine; the time stays in budget).
func TestCrashAnywhereSharedPath(t *testing.T) {
	t.Parallel()
	random := 4
	if full {
		random = 50
	}
	crashAnywhere(t, newCrashWorld(t, true), random)
}

func crashAnywhere(t *testing.T, w *crashWorld, random int) {
	// A clean run with the slow knob measures how long a rotation takes.
	start := time.Now()
	out, code := w.cli([]string{"ROTATOR_TEST_SLOW=20ms"}, "run", "--secret", w.id)
	require.Equal(t, 0, code, out)
	span := time.Since(start)
	w.checkSettled("clean run")
	t.Logf("a rotation with ROTATOR_TEST_SLOW=20ms takes %s (process start included)", span)

	n := 0
	person := func() {
		n++
		if w.shared {
			w.personWrites(fmt.Sprintf("tg-%d", n))
		}
	}
	points := stepBoundaries()
	kills := 0
	for _, p := range points {
		person()
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
		person()
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
