package proof_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/vault"
)

// The runbook's procedures (docs/runbook.md), each run with the rotator
// binary exactly as the runbook's commands say, against a Postgres
// blue/green pair published to AWS Secrets Manager (moto), Vault (a dev
// server) and the files store. AWS and Vault sit behind TCP proxies whose
// port the test closes (a store outage as rotator sees one); the checks
// read every store directly. After each step of a procedure one invariant
// is checked (runbookWorld.check): what every store publishes as current
// logs in, version numbers are never reused, and once settled every
// store's previous is the last version that was really current.

// runbookPolicy: AWS first and the files store last, so that a files store
// that refuses a publish leaves two stores to put back.
const runbookPolicy = `version: 1
defaults:
  jitter: 0s
stores:
  - name: aws
    awssm:
      region: us-east-1
      endpoint: http://%s
  - name: vault
    vault:
      address: http://%s
      mount: secret
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
      - store: aws
        path: runbook/db/postgres
      - store: vault
        path: runbook/db/postgres
      - store: local
        path: db/postgres.json
    grace: 30s
    monitor: 0s
    retry: {attempts: 2, initial: 1s, max: 1s}
`

// runbookStore is one store of the secret, read directly (not through the
// proxy rotator uses).
type runbookStore struct {
	name, path string
	direct     rotation.Store
}

type runbookWorld struct {
	t          *testing.T
	tg         *target
	dir        string
	env        []string
	stateDSN   string
	aws        *proxy
	vault      *vaultdev.Proxy
	vaultSrv   *vaultdev.Server
	stores     []runbookStore
	numbers    map[int64]string // version number -> fingerprint
	passwords  []string         // every password seen, searched for in the output
	out        strings.Builder  // everything the CLI printed
	really     string           // run id of the version last current everywhere
	before     string           // and of the one before it
	rolledBack string           // a rollback made really current; this run stays valid
}

func newRunbookWorld(t *testing.T) *runbookWorld {
	t.Helper()
	ctx := context.Background()
	moto := mototest.New(t)
	vs := vaultdev.New(t, vaultdev.Options{})
	w := &runbookWorld{t: t, tg: newTarget(t, "runbook"), dir: t.TempDir(), stateDSN: newStateDSN(t), numbers: map[int64]string{}}
	w.passwords = append(w.passwords, w.tg.initial)
	w.aws = newProxy(t, strings.TrimPrefix(moto.URL, "http://"))
	w.vault = vaultdev.NewProxy(t, vs.Addr)
	// rotator's token holds the policy deploy/vault/rotator.hcl ships,
	// for the secret's path.
	w.vaultSrv = vs
	w.vaultPolicy(true)
	token := vs.CreateToken(t, vaultdev.TokenOptions{Policies: []string{"runbook-rotator"}, Renewable: true})
	w.env = clitest.Setup(t, binary, w.dir, w.stateDSN, fmt.Sprintf(runbookPolicy, w.aws.addr, strings.TrimPrefix(w.vault.Addr, "http://"), w.tg.role),
		append([]string{"ROTATOR_PG_ADMIN_DSN=" + w.tg.dsn, "VAULT_TOKEN=" + token,
			"ROTATOR_LEASE_TTL=1s", // a killed process's lease frees itself after 1s
		}, clitest.AWSEnv...)...)

	cfg := moto.AWSConfig()
	as, err := awssm.New(ctx, awssm.Config{Spec: &policy.AWSSMSpec{Region: "us-east-1"}, AWS: &cfg})
	require.NoError(t, err)
	w.stores = append(w.stores, runbookStore{"aws", "runbook/db/postgres", as})
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(vs.RootToken), 0o600))
	vst, err := vault.New(ctx, vault.Config{Spec: &policy.VaultSpec{Address: vs.Addr, Mount: "secret",
		Auth: policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: tokenFile}}}}})
	require.NoError(t, err)
	t.Cleanup(vst.Close)
	w.stores = append(w.stores, runbookStore{"vault", "runbook/db/postgres", vst})
	fs, err := files.New(&policy.FilesSpec{Dir: filepath.Join(w.dir, "secrets")}, "")
	require.NoError(t, err)
	w.stores = append(w.stores, runbookStore{"local", "db/postgres.json", fs})
	w.must("migrate")
	w.must("init", "--secret", "db/postgres")
	return w
}

// vaultPolicy writes rotator's Vault policy: deploy/vault/rotator.hcl for
// the secret's path, or (writable false) the same with read only, as a
// token whose policy lacks create/update has.
func (w *runbookWorld) vaultPolicy(writable bool) {
	w.t.Helper()
	b, err := os.ReadFile("../deploy/vault/rotator.hcl")
	require.NoError(w.t, err)
	rules := strings.ReplaceAll(string(b), `/apps/*"`, `/runbook/*"`)
	if !writable {
		ro := strings.ReplaceAll(rules, `capabilities = ["create", "read", "update"]`, `capabilities = ["read"]`)
		require.NotEqual(w.t, rules, ro, "deploy/vault/rotator.hcl changed: make the read-only policy another way")
		rules = ro
	}
	w.vaultSrv.WritePolicy(w.t, "runbook-rotator", rules)
}

// cli runs rotator as the runbook says and returns its output and exit code.
func (w *runbookWorld) cli(extra []string, args ...string) (string, int) {
	w.t.Helper()
	cw := &crashWorld{t: w.t, dir: w.dir, env: w.env}
	out, code := cw.cli(extra, args...)
	fmt.Fprintf(&w.out, "$ rotator %s  # exit %d\n%s", strings.Join(args, " "), code, out)
	return out, code
}

// expect runs rotator and requires exit code want.
func (w *runbookWorld) expect(want int, args ...string) string {
	w.t.Helper()
	out, code := w.cli(nil, args...)
	require.Equal(w.t, want, code, "rotator %s:\n%s", strings.Join(args, " "), out)
	return out
}

func (w *runbookWorld) must(args ...string) string { w.t.Helper(); return w.expect(0, args...) }

// runUntilFree runs rotator while it says the secret is busy (a killed
// process's lease runs out after ROTATOR_LEASE_TTL).
func (w *runbookWorld) runUntilFree(extra []string, args ...string) (string, int) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := w.cli(extra, args...)
		if code != 5 || time.Now().After(deadline) {
			return out, code
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killAt starts `rotator run` with ROTATOR_TEST_FAULT=exit:WHEN:STEP: the
// process exits (137) right before the step's external call or right
// after its outcome is journaled, cleaning nothing up, as a SIGKILL would.
func (w *runbookWorld) killAt(point string) {
	w.t.Helper()
	out, code := w.cli([]string{"ROTATOR_TEST_FAULT=exit:" + point}, "run", "--secret", "db/postgres")
	require.Equal(w.t, 137, code, out)
	require.Contains(w.t, out, "ROTATOR_TEST_FAULT exit")
}

// stopAt runs `rotator run` with ROTATOR_TEST_FAULT=stop:WHEN:STEP: the
// process stops itself (SIGSTOP) the first time it reaches the point;
// change runs while it is stopped, then it goes on (SIGCONT). It returns
// the output and the exit code.
func (w *runbookWorld) stopAt(point string, change func()) (string, int) {
	w.t.Helper()
	cw := &crashWorld{t: w.t, dir: w.dir, env: w.env}
	cmd := cw.cmd([]string{"ROTATOR_TEST_FAULT=stop:" + point}, "run", "--secret", "db/postgres")
	pr, pw, err := os.Pipe()
	require.NoError(w.t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(w.t, cmd.Start())
	_ = pw.Close()
	var out strings.Builder
	r := bufio.NewReader(pr)
	for {
		line, err := r.ReadString('\n')
		out.WriteString(line)
		require.NoError(w.t, err, "the process ended before reaching %s:\n%s", point, out.String())
		if strings.HasPrefix(line, "ROTATOR_TEST_FAULT stop ") {
			break
		}
	}
	// Wait until it has stopped: a SIGCONT sent before its SIGSTOP would
	// leave it stopped for good.
	stat := fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile(stat)
		require.NoError(w.t, err)
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "T" {
			break
		}
		require.True(w.t, time.Now().Before(deadline), "rotator did not stop at %s", point)
		time.Sleep(5 * time.Millisecond)
	}
	change()
	require.NoError(w.t, cmd.Process.Signal(syscall.SIGCONT))
	rest, _ := io.ReadAll(r)
	out.Write(rest)
	code := exitCode(cmd.Wait())
	_ = pr.Close()
	fmt.Fprintf(&w.out, "$ rotator run --secret db/postgres  # stopped at %s, exit %d\n%s", point, code, out.String())
	return out.String(), code
}

// newKey is the runbook's "make a new key and deploy it".
func (w *runbookWorld) newKey() {
	w.t.Helper()
	w.env = append(w.env, "ROTATOR_STATE_KEY="+clitest.Keygen(w.t, binary))
}

// storeState is what one store publishes.
type storeState struct {
	store             runbookStore
	current, previous *rotation.VersionMeta
	cred              rotation.Credential
}

func (w *runbookWorld) read(s runbookStore) storeState {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := s.direct.Describe(ctx, rotation.DescribeRequest{Path: s.path})
	require.NoError(w.t, err, s.name)
	st := storeState{store: s, current: d.Current, previous: d.Previous}
	if d.Current != nil {
		v, err := s.direct.Read(ctx, rotation.ReadRequest{Path: s.path, Which: rotation.Current})
		require.NoError(w.t, err, s.name)
		st.cred = v.Credential
		w.passwords = append(w.passwords, v.Credential.Secret.Reveal())
	}
	return st
}

// current is the run id every store publishes as current ("" when they
// disagree or nothing is published).
func (w *runbookWorld) current() (string, []storeState) {
	var states []storeState
	run := ""
	for i, s := range w.stores {
		st := w.read(s)
		states = append(states, st)
		switch {
		case st.current == nil:
			run = ""
		case i == 0:
			run = st.current.RunID
		case st.current.RunID != run:
			run = ""
		}
		if st.current == nil {
			return "", states
		}
	}
	return run, states
}

// check asserts the invariant after a step of a procedure. settled says
// no run is unfinished: then every store publishes the same version, its
// previous is the last version that was really current, and no role of
// the pair can log in that no store publishes (but the one a rollback
// made previous: clients that hold it keep working).
func (w *runbookWorld) check(what string, settled bool) string {
	w.t.Helper()
	t := w.t
	run, states := w.current()
	published := map[string]bool{}
	for _, st := range states {
		if st.current == nil {
			continue
		}
		published[st.cred.Username] = true
		require.NoError(t, w.tg.login(st.cred.Username, st.cred.Secret.Reveal()),
			"%s: what %s publishes as current (version %d, %s) must log in", what, st.store.name, st.current.Number, st.cred.Username)
		fp := st.cred.Secret.Fingerprint()
		if old, ok := w.numbers[st.current.Number]; ok {
			require.Equal(t, old, fp, "%s: version %d names two credentials", what, st.current.Number)
		}
		w.numbers[st.current.Number] = fp
	}
	if !settled {
		return run
	}
	require.NotEmpty(t, run, "%s: every store publishes the same version once settled", what)
	if run != w.really {
		w.before, w.really = w.really, run
	}
	for _, st := range states {
		if w.before == "" || st.previous == nil {
			continue
		}
		require.Equal(t, w.before, st.previous.RunID, "%s: %s's previous must be the last version that was really current", what, st.store.name)
	}
	for _, r := range w.tg.loginRoles() {
		if published[r] {
			continue
		}
		if w.rolledBack != "" && r == w.rolledBack {
			continue
		}
		t.Fatalf("%s: %s can log in but no store publishes it (login roles %v, published %v)", what, r, w.tg.loginRoles(), published)
	}
	return run
}

// noPasswords requires that no password appears in anything the CLI printed.
func (w *runbookWorld) noPasswords() {
	w.t.Helper()
	out := w.out.String()
	for _, pw := range w.passwords {
		if pw != "" {
			require.NotContains(w.t, out, pw, "a password leaked into the CLI's output")
		}
	}
}

// activeRun is the row `rotator status` prints for the secret.
func (w *runbookWorld) activeRun() string {
	w.t.Helper()
	out := w.must("status")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == "db/postgres" {
			return sc.Text()
		}
	}
	w.t.Fatalf("rotator status has no row for db/postgres:\n%s", out)
	return ""
}

// TestRunbookRotationFailed is the runbook's "A rotation failed" (exit 3)
// and "A run needs attention" (exit 3): a store refuses the publish (the
// files store's .previous replaced by a directory): the run fails, the
// stores that took the version are put back and the new credential is
// disabled; history names the step; once fixed, `rotator run` rotates.
// Then AWS is unreachable during a run: the run needs attention, the new
// credential stays valid; with AWS back, `rotator run` completes the
// compensation and the next one rotates.
func TestRunbookRotationFailed(t *testing.T) {
	t.Parallel()
	w := newRunbookWorld(t)
	for i := 1; i <= 2; i++ {
		out := w.must("run", "--secret", "db/postgres")
		require.Contains(t, out, "db/postgres: rotated")
		w.check(fmt.Sprintf("rotation %d", i), true)
	}

	// A store refuses: rotator's Vault token may read but not write (the
	// runbook: "Vault permission denied: need create/update on ...").
	w.vaultPolicy(false)
	out := w.expect(3, "run", "--secret", "db/postgres")
	require.Contains(t, out, "FAILED")
	require.Contains(t, out, "at publish")
	require.Contains(t, out, "permission denied")
	w.check("publish refused by Vault", true)
	// Step 1 of the procedure: history says which step failed and why.
	hist := w.must("history", "--secret", "db/postgres")
	require.Contains(t, hist, "FAILED")
	require.Contains(t, hist, "vault:runbook/db/postgres")
	require.Contains(t, hist, "permission denied")
	// Step 3: fix the cause (the token's policy), run again.
	w.vaultPolicy(true)
	out = w.must("run", "--secret", "db/postgres")
	require.Contains(t, out, "db/postgres: rotated")
	w.check("rotation after the fix", true)

	// AWS cannot be reached at all: the run cannot observe what it
	// publishes, does nothing and fails at generate.
	w.aws.Down()
	out = w.expect(3, "run", "--secret", "db/postgres")
	require.Contains(t, out, "FAILED")
	require.Contains(t, out, "observe aws:runbook/db/postgres")
	w.aws.Up(t)
	w.check("AWS unreachable before the run", true)
	require.Len(t, w.tg.loginRoles(), 1, "nothing was generated")

	// "A run needs attention": AWS takes the new version and is gone
	// right after; Vault then refuses it, so the run fails, and AWS cannot
	// be put back.
	out, code := w.stopAt("after:publish", func() {
		w.aws.Down()
		w.vaultPolicy(false)
	})
	require.Equal(t, 3, code, out)
	require.Contains(t, out, "NEEDS ATTENTION")
	w.check("AWS gone during compensation: needs attention", false)
	require.Len(t, w.tg.loginRoles(), 2, "the new credential stays valid while a store may publish it")
	require.Contains(t, w.activeRun(), "active NEEDS ATTENTION (run at compensate)", "status shows the run")
	hist = w.must("history", "--secret", "db/postgres")
	require.Contains(t, hist, "aws:runbook/db/postgres", "history names the store")
	// Vault is fixed, AWS still unreachable: the next run cannot observe
	// AWS, says so (exit 1) and changes nothing; the run stays open.
	w.vaultPolicy(true)
	out = w.expect(1, "run", "--secret", "db/postgres")
	require.Contains(t, out, "observe aws:runbook/db/postgres")
	w.check("AWS still unreachable", false)
	require.Len(t, w.tg.loginRoles(), 2, "the new credential stays valid while a store may publish it")
	require.Contains(t, w.activeRun(), "active NEEDS ATTENTION (run at compensate)")
	// Fix the store; nothing else is needed: the next run completes the
	// compensation (the run ends as failed), the one after rotates.
	w.aws.Up(t)
	out = w.expect(3, "run", "--secret", "db/postgres")
	require.Contains(t, out, "FAILED")
	w.check("compensation completed", true)
	out = w.must("run", "--secret", "db/postgres")
	require.Contains(t, out, "db/postgres: rotated")
	w.check("rotation after the outage", true)
	w.noPasswords()
}

// TestRunbookRollbackIncomplete is the runbook's "Rolling back" with exit
// 6: rotator's Vault token may read but no longer write, so `rotator
// rollback` rolls AWS and the files store back and names Vault; once the
// token's policy is fixed, the same command finishes the same rollback (it
// does not undo the first half); run a third time it changes nothing; the
// next rotation uses a new version number. Before that, a store that
// cannot be reached at all makes rollback change nothing (exit 1).
func TestRunbookRollbackIncomplete(t *testing.T) {
	t.Parallel()
	w := newRunbookWorld(t)
	var runs []string
	for i := 1; i <= 2; i++ {
		w.must("run", "--secret", "db/postgres")
		runs = append(runs, w.check(fmt.Sprintf("rotation %d", i), true))
	}
	_, states := w.current()
	v2 := states[0].cred.Username

	// AWS cannot be reached: rollback cannot observe it and changes nothing.
	w.aws.Down()
	out := w.expect(1, "rollback", "--secret", "db/postgres")
	require.Contains(t, out, "observe aws:runbook/db/postgres")
	w.aws.Up(t)
	require.Equal(t, runs[1], w.check("rollback refused with AWS unreachable", true), "nothing was rolled back")

	// Vault refuses the write: exit 6, the output names it.
	w.vaultPolicy(false)
	out = w.expect(6, "rollback", "--secret", "db/postgres")
	require.Contains(t, out, "NOT restored: store vault:runbook/db/postgres")
	require.Contains(t, out, "permission denied")
	require.Contains(t, out, "rollback incomplete")
	w.check("rollback with Vault refusing", false)
	_, states = w.current()
	for _, st := range states {
		want := runs[0]
		if st.store.name == "vault" {
			want = runs[1]
		}
		require.Equal(t, want, st.current.RunID, "%s after the incomplete rollback", st.store.name)
	}

	// Fix the store, run the same command again: it finishes.
	w.vaultPolicy(true)
	out = w.must("rollback", "--secret", "db/postgres")
	require.Contains(t, out, "version 1 ("+states[2].cred.Username+") is current again")
	w.rolledBack = v2
	require.Equal(t, runs[0], w.check("rollback run again", true), "the second rollback finishes the first: version 1")

	// Once complete, running it again changes nothing.
	out = w.must("rollback", "--secret", "db/postgres")
	require.Contains(t, out, "already rolled back")
	require.Equal(t, runs[0], w.check("rollback run a third time", true), "it never rolls forward")

	out = w.must("run", "--secret", "db/postgres")
	require.Contains(t, out, "db/postgres: rotated")
	w.rolledBack = ""
	w.check("rotation after the rollback", true)
	require.Len(t, w.numbers, 3, "versions 1, 2 and a new 3: %v", w.numbers)
	w.noPasswords()
}

// TestRunbookLostStateKey is the runbook's "Losing the state key": a new
// key is made with `rotator keygen` and deployed while runs are in flight.
// A first rotation interrupted after publish is resumed by `rotator run`
// (its credential read back from the stores); a run interrupted before
// publish is refused by `rotator run` ("unseal the new credential"),
// ended by `rotator rollback`, and `rotator run` rotates again; a run
// interrupted in its generate step generates again under the new key.
func TestRunbookLostStateKey(t *testing.T) {
	t.Parallel()
	w := newRunbookWorld(t)

	// A first rotation is interrupted after publish; the key is lost.
	w.killAt("after:publish")
	w.newKey()
	require.Contains(t, w.activeRun(), "publish", "status shows the secret with an active run")
	out, code := w.runUntilFree(nil, "run", "--secret", "db/postgres")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "db/postgres: rotated (resumed)")
	w.check("first rotation resumed under a new key", true)
	out = w.must("run", "--secret", "db/postgres")
	require.Contains(t, out, "db/postgres: rotated")
	w.check("rotation under the new key", true)

	// A run is interrupted before publish (its new credential generated,
	// sealed and staged); the key is lost.
	w.killAt("before:publish")
	w.newKey()
	out, code = w.runUntilFree(nil, "run", "--secret", "db/postgres")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "unseal the new credential")
	require.Contains(t, out, "is ROTATOR_STATE_KEY the key this run was started with?")
	w.check("run refused under the new key", false)
	out = w.must("rollback", "--secret", "db/postgres")
	w.check("unfinished run ended by rollback", true)
	out = w.must("run", "--secret", "db/postgres")
	require.Contains(t, out, "db/postgres: rotated")
	w.check("rotation after the rollback", true)

	// A run interrupted in its generate step; the key is lost. It
	// generates again under the new key.
	w.killAt("after:generate")
	w.newKey()
	require.Contains(t, w.activeRun(), "active (run at generate)")
	out, code = w.runUntilFree(nil, "run", "--secret", "db/postgres")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "db/postgres: rotated (resumed)")
	w.check("run interrupted in generate, resumed under a new key", true)
	w.noPasswords()
}
