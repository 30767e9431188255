package rotation_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/vault"
)

// The failure-path matrix (issue 13): every step a fault can hit × where
// the faulty store stands among 1–3 stores × the kind of fault × the
// rotation mode. After every run, and while it runs (clients log in every
// 50 ms with what a store publishes), one invariant is checked instead of
// an expected outcome per case:
//
//   - what each store publishes as current works (logs in / tests ok);
//   - each store's previous is the last version that was really current
//     (current everywhere after a completed run);
//   - nothing can log in that no store publishes and no unfinished run owns
//     (blue/green);
//   - a version number never names two credentials.
//
// The findings of issue 13 are named cases in it (see matrixFindings).

// fault is how a store misbehaves.
type faultKind string

const (
	faultError   faultKind = "error"   // answers at once with an error
	faultTimeout faultKind = "timeout" // never answers (the action deadline ends it)
	faultGone    faultKind = "gone"    // takes the publish, then is unreachable for everything, compensation included
)

// faultStore is a store that misbehaves on one operation while armed: the
// files store, or a real Vault or AWS (moto) store that the engine reaches
// through a TCP proxy. Store is what the engine uses; direct reads the
// same secret without the fault or the proxy, for the invariant and the
// clients.
type faultStore struct {
	rotation.Store
	backend string // files, vault, aws
	path    string
	direct  rotation.Store
	// proxy, for Vault and AWS, is between the engine and the server:
	// "gone" takes it down (a real outage), heal brings it back.
	proxy  *vaultdev.Proxy
	mu     sync.Mutex
	op     string // "stage" or "publish": the operation that fails
	kind   faultKind
	armed  bool
	down   bool // gone: everything fails
	tookIt bool
}

func (f *faultStore) arm(op string, kind faultKind) {
	f.mu.Lock()
	f.op, f.kind, f.armed = op, kind, true
	f.mu.Unlock()
}

func (f *faultStore) heal() {
	f.mu.Lock()
	f.armed, f.down = false, false
	f.mu.Unlock()
	if f.proxy != nil {
		f.proxy.SetDown(false)
	}
}

// goAway makes the store unreachable for everything: its proxy goes down
// (Vault, AWS), or every call fails (files).
func (f *faultStore) goAway() {
	if f.proxy != nil {
		f.proxy.SetDown(true)
		return
	}
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
}

// fail decides whether op fails now, and how.
func (f *faultStore) fail(ctx context.Context, op string) error {
	f.mu.Lock()
	down, armed, kind, fop := f.down, f.armed, f.kind, f.op
	f.mu.Unlock()
	if down {
		return errUnreachable
	}
	if !armed || (op != fop && fop != "*") || kind == faultGone {
		return nil
	}
	if kind == faultTimeout {
		<-ctx.Done()
		return ctx.Err()
	}
	return errUnreachable
}

func (f *faultStore) Stage(ctx context.Context, req rotation.StageRequest) error {
	if err := f.fail(ctx, "stage"); err != nil {
		return err
	}
	return f.Store.Stage(ctx, req)
}

func (f *faultStore) Publish(ctx context.Context, req rotation.PublishRequest) error {
	if err := f.fail(ctx, "publish"); err != nil {
		return err
	}
	if err := f.Store.Publish(ctx, req); err != nil {
		return err
	}
	f.mu.Lock()
	gone := f.armed && f.kind == faultGone && f.op == "publish"
	f.mu.Unlock()
	if gone {
		f.goAway() // took it, then went away
	}
	return nil
}

func (f *faultStore) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if err := f.fail(ctx, "rollback"); err != nil {
		return err
	}
	return f.Store.Rollback(ctx, req)
}

func (f *faultStore) Abort(ctx context.Context, req rotation.AbortRequest) error {
	if err := f.fail(ctx, "abort"); err != nil {
		return err
	}
	return f.Store.Abort(ctx, req)
}

func (f *faultStore) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	if err := f.fail(ctx, "describe"); err != nil {
		return rotation.DescribeResponse{}, err
	}
	return f.Store.Describe(ctx, req)
}

// faultRotator fails one operation of a rotator while armed.
type faultRotator struct {
	rotation.Rotator
	mu    sync.Mutex
	op    string
	armed bool
}

func (f *faultRotator) failing(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.armed && f.op == op
}

func (f *faultRotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	if f.failing("generate") || (f.failing("rekey") && req.Apply != nil) {
		return rotation.GenerateResponse{}, errUnreachable
	}
	return f.Rotator.Generate(ctx, req)
}

func (f *faultRotator) Test(ctx context.Context, req rotation.TestRequest) error {
	if f.failing("test") {
		return errUnreachable
	}
	return f.Rotator.Test(ctx, req)
}

// matrixWorld is one case's env with n fault stores.
type matrixWorld struct {
	*env
	mode    string
	kind    matrixKind // the target: Postgres, MariaDB or Redis
	stores  []*faultStore
	rot     *faultRotator
	numbers map[int64]string // version number -> fingerprint
	// really is the run id of the version that was last current
	// everywhere, and before it.
	really, reallyBefore string
}

// matrixServers are the real Vault and AWS (moto) servers of the matrix,
// shared by its cells (each cell uses paths of its own), started by the
// first cell that needs one and stopped after the last cell.
type matrixServers struct {
	vaultOnce, motoOnce, iamOnce sync.Once
	vault                        *vaultdev.Server
	moto                         *mototest.Server
	iam                          *mototest.IAMAuth
	vaultErr, motoErr, iamErr    error
}

// iamServer is moto with IAM authentication enforced, for the awsiam
// mode's cells (each with a user of its own).
func (s *matrixServers) iamServer(t *testing.T) *mototest.IAMAuth {
	t.Helper()
	s.iamOnce.Do(func() { s.iam, s.iamErr = mototest.StartIAMAuth() })
	if s.iamErr != nil {
		t.Fatalf("%v", s.iamErr)
	}
	return s.iam
}

func (s *matrixServers) vaultServer(t *testing.T) *vaultdev.Server {
	t.Helper()
	s.vaultOnce.Do(func() { s.vault, s.vaultErr = vaultdev.Start(vaultdev.Options{}) })
	if s.vaultErr != nil {
		t.Fatalf("%v", s.vaultErr)
	}
	return s.vault
}

func (s *matrixServers) motoServer(t *testing.T) *mototest.Server {
	t.Helper()
	s.motoOnce.Do(func() { s.moto, s.motoErr = mototest.Start() })
	if s.motoErr != nil {
		t.Fatalf("%v", s.motoErr)
	}
	return s.moto
}

func (s *matrixServers) close() {
	if s.vault != nil {
		_ = s.vault.Close()
	}
	if s.moto != nil {
		_ = s.moto.Close()
	}
	if s.iam != nil {
		_ = s.iam.Close()
	}
}

// matrixPath numbers the cells' paths at the shared servers.
var matrixPath atomic.Int64

// newMatrixWorld builds a cell's world with one store per entry of layout
// (files, vault or aws).
func newMatrixWorld(t *testing.T, mode string, layout []string, srv *matrixServers) *matrixWorld {
	e := newEnv(t)
	w := &matrixWorld{env: e, mode: mode, numbers: map[int64]string{}}
	var base rotation.Rotator = e.rotator
	switch mode {
	case policy.ModeSingleRole:
		r, err := newRotator(e, &policy.PostgresSpec{Role: e.role, Mode: policy.ModeSingleRole})
		require.NoError(t, err)
		base = r
	case "token":
		tok, err := apikey.NewToken(&policy.TokenSpec{Prefix: "adm_", Length: 40})
		require.NoError(t, err)
		base = tok
	case matrixMySQL, matrixRedis, matrixKeyring:
		w.kind, base = newMatrixKind(t, mode, e.engine.Logger)
	case matrixAWSIAM:
		w.kind, base = newAWSIAMMatrixKind(t, srv.iamServer(t), e.engine.Logger)
	}
	if w.kind == nil {
		w.kind = pgMatrixKind{e}
	}
	w.rot = &faultRotator{Rotator: base}
	e.target.Rotator = w.rot
	if _, ok := base.(rotation.Successor); ok {
		e.target.Rotator = faultSuccessor{w.rot}
	}
	e.target.Publish = nil
	for i, backend := range layout {
		st := &faultStore{backend: backend, path: "db/postgres.json"}
		base, shared := strings.CutSuffix(backend, "-shared")
		switch base {
		case "files":
			fs, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
			require.NoError(t, err)
			st.Store, st.direct = fs, fs
		case "vault":
			st.path = fmt.Sprintf("matrix/%d/db/postgres", matrixPath.Add(1))
			vs := srv.vaultServer(t)
			st.proxy = vaultdev.NewProxy(t, vs.Addr)
			st.Store = newVaultStore(t, vs, st.proxy.Addr)
			st.direct = newVaultStore(t, vs, vs.Addr)
		case "aws":
			st.path = fmt.Sprintf("matrix/%d/db/postgres", matrixPath.Add(1))
			moto := srv.motoServer(t)
			st.proxy = vaultdev.NewProxy(t, moto.URL)
			st.Store = newAWSStore(t, st.proxy.Addr)
			st.direct = newAWSStore(t, moto.URL)
		default:
			t.Fatalf("unknown store %q", backend)
		}
		if shared {
			shareStore(t, st, mode)
		}
		w.stores = append(w.stores, st)
		e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: fmt.Sprintf("s%d-%s", i, backend), Path: st.path, Store: st})
	}
	e.engine.Sleep = nil                     // real sleeps: compensation waits out the delay check
	e.engine.ActionTimeout = 5 * time.Second // a timeout fault costs this per try; logins under load need it
	e.target.Checks = []rotation.Check{rotation.Delay{D: matrixDelay}}
	if k, ok := w.kind.(*keyringMatrixKind); ok {
		k.attach(w) // its clients' http check instead
	}
	return w
}

// shareStore makes st a shared document (issue 19): the secret owns its
// secret field and username in a JSON document in which another writer
// put telegram_token first, which must survive the cell.
func shareStore(t *testing.T, st *faultStore, mode string) {
	t.Helper()
	doc, ok := st.direct.(rotation.DocStore)
	require.True(t, ok, "%s holds no shared document", st.backend)
	require.NoError(t, doc.WriteDoc(t.Context(), st.path, map[string]string{"telegram_token": "kept"}, ""))
	field := "password"
	if mode == "token" {
		field = policy.DefaultTokenField
	}
	own := map[string]string{field: "db_password", "username": "db_user"}
	st.Store = rotation.SharedFields(st.Store.(rotation.DocStore), rotation.SharedMetaField("db/postgres"), own)
	st.direct = rotation.SharedFields(doc, rotation.SharedMetaField("db/postgres"), own)
	t.Cleanup(func() {
		d, _, err := doc.ReadDoc(context.Background(), st.path)
		require.NoError(t, err)
		require.Equal(t, "kept", d["telegram_token"], "the other writer's field of %s survives", st.backend)
	})
}

func newVaultStore(t *testing.T, srv *vaultdev.Server, addr string) rotation.Store {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(srv.RootToken), 0o600))
	vs, err := vault.New(context.Background(), vault.Config{Spec: &policy.VaultSpec{Address: addr, Mount: "secret",
		Auth: policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: tokenFile}}}}})
	require.NoError(t, err)
	t.Cleanup(vs.Close)
	return vs
}

func newAWSStore(t *testing.T, url string) rotation.Store {
	t.Helper()
	cfg := mototest.Config(url)
	as, err := awssm.New(context.Background(), awssm.Config{Spec: &policy.AWSSMSpec{Region: mototest.Region}, AWS: &cfg})
	require.NoError(t, err)
	return as
}

// works tests a published credential the way its clients would.
func (w *matrixWorld) works(c rotation.Credential) error {
	if w.mode == "token" {
		return w.rot.Rotator.Test(w.ctx, rotation.TestRequest{SecretID: "db/postgres", Credential: c})
	}
	w.saw(c.Secret.Reveal())
	return w.kind.works(c)
}

// check asserts the invariant; settled says no run is unfinished.
func (w *matrixWorld) check(what string, settled bool) {
	t := w.t
	t.Helper()
	published := map[string]bool{}
	var brokenSingle, stores int
	defer func() {
		require.Less(t, brokenSingle, max(stores, 1), "%s: at least one store must publish a working credential", what)
	}()
	var curRun string
	allSame := true
	for i, st := range w.stores {
		d, err := st.direct.Describe(w.ctx, rotation.DescribeRequest{Path: st.path})
		require.NoError(t, err, "s%d (%s)", i, st.backend)
		if d.Current == nil {
			continue
		}
		if i == 0 {
			curRun = d.Current.RunID
		} else if d.Current.RunID != curRun {
			allSame = false
		}
		v, err := st.direct.Read(w.ctx, rotation.ReadRequest{Path: st.path, Which: rotation.Current})
		require.NoError(t, err, "s%d (%s)", i, st.backend)
		if werr := w.works(v.Credential); werr != nil {
			if !settled && w.mode == policy.ModeSingleRole {
				// Single-role has one password: while a store that took
				// the new one cannot be put back, the others publish the
				// old one, which no longer works (the documented
				// exception); at least one store must publish one that
				// does.
				brokenSingle++
			} else {
				require.NoError(t, werr, "%s: what s%d publishes as current (version %d, %s) must work", what, i, v.Number, v.Credential.Username)
			}
		}
		stores++
		published[w.kind.ident(v.Credential)] = true
		fp := v.Credential.Secret.Fingerprint()
		if old, ok := w.numbers[v.Number]; ok {
			require.Equal(t, old, fp, "%s: version %d names two credentials", what, v.Number)
		}
		w.numbers[v.Number] = fp
		if settled && w.reallyBefore != "" && d.Previous != nil && d.Current.RunID == w.really {
			require.Equal(t, w.reallyBefore, d.Previous.RunID, "%s: s%d's (%s) previous is not the last really-current version", what, i, st.backend)
		}
	}
	if settled && allSame && curRun != "" && curRun != w.really {
		w.reallyBefore, w.really = w.really, curRun
	}
	if settled && dualKey(w.mode) {
		active, err := w.db.ActiveRun(w.ctx, "db/postgres")
		require.NoError(t, err)
		for _, r := range w.kind.live() {
			if published[r] || (active != nil && w.kind.ident(rotation.Credential{Username: active.New.Username, KeyID: active.New.KeyID}) == r) {
				continue
			}
			if len(published) == 0 && r == w.kind.original() {
				continue // nothing published yet: the original role
			}
			t.Fatalf("%s: %s can log in but no store publishes it and no unfinished run owns it", what, r)
		}
	}
}

// clients log in every 50ms with what the first healthy store publishes;
// they return the failures.
// matrixDelay is the verify step's delay check in the matrix: the time
// the policy gives a client between reading the store and logging in.
const matrixDelay = 300 * time.Millisecond

func (w *matrixWorld) clients() (stop func() []string) {
	if k, ok := w.kind.(*keyringMatrixKind); ok {
		return k.startClients(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var failures []string
	var mu sync.Mutex
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for i, st := range w.stores {
				read := time.Now()
				v, err := st.direct.Read(ctx, rotation.ReadRequest{Path: st.path, Which: rotation.Current})
				if err != nil {
					continue
				}
				if err := w.works(v.Credential); err != nil && ctx.Err() == nil {
					// A client that read just before a retire may lose
					// the race only if verify did not cover it: the delay
					// check does, for a client that logs in within the
					// delay of its read. One slower than that (a machine
					// overloaded: once in make test with three other
					// suites beside it) whose store has moved on since
					// its read is outside what the policy promises, and
					// is logged, not counted. A store that still serves
					// what failed is asked again: a credential that does
					// not work is counted however slow the client.
					took := time.Since(read)
					slow := took > matrixDelay
					if slow {
						again, rerr := st.direct.Read(ctx, rotation.ReadRequest{Path: st.path, Which: rotation.Current})
						if rerr == nil && again.Number == v.Number && w.works(again.Credential) != nil && ctx.Err() == nil {
							slow = false
						}
					}
					if slow {
						w.t.Logf("a client slower than the delay check (%s from its read to the refusal; the store has moved on): s%d v%d %s: %v",
							took.Round(time.Millisecond), i, v.Number, v.Credential.Username, err)
					} else {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("s%d v%d %s: %v (%s after its read)", i, v.Number, v.Credential.Username, err, took.Round(time.Millisecond)))
						mu.Unlock()
					}
				}
				n.Add(1)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return failures
	}
}

// matrixCase is one cell of the matrix.
type matrixCase struct {
	mode   string
	layout []string // the stores in publish order: files, vault, aws
	pos    int      // which store is faulty
	op     string   // generate, stage, publish, retire, monitor
	kind   faultKind
	name   string // a finding of issue 13, when the cell reproduces one
}

// filesOnly is a layout of n files stores.
func filesOnly(n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = "files"
	}
	return l
}

// real reports whether the cell has a Vault or AWS store.
func (c matrixCase) real() bool {
	return slices.ContainsFunc(c.layout, func(b string) bool { return b != "files" })
}

func (c matrixCase) String() string {
	stores := fmt.Sprintf("%dstores", len(c.layout))
	if c.real() {
		stores = strings.Join(c.layout, "+")
	}
	s := fmt.Sprintf("%s/%s/s%d/%s/%s", c.mode, stores, c.pos, c.op, c.kind)
	if c.name != "" {
		s = c.name + "/" + s
	}
	return s
}

// matrixFull runs every timeout cell too (MATRIX_FULL=1 or PROOF_FULL=1);
// by default timeouts run for one store layout, to keep `make test` short.
var matrixFull = os.Getenv("MATRIX_FULL") != "" || os.Getenv("PROOF_FULL") != ""

func matrixCases() []matrixCase {
	var cs []matrixCase
	for _, mode := range []string{policy.ModeBlueGreen, policy.ModeSingleRole, "token"} {
		for _, layout := range []struct{ n, pos int }{{1, 0}, {3, 0}, {3, 2}} {
			for _, op := range []string{"stage", "publish"} {
				for _, kind := range []faultKind{faultError, faultTimeout, faultGone} {
					if kind == faultGone && op == "stage" {
						continue // gone is defined on publish
					}
					if kind == faultTimeout && !matrixFull && !(layout.n == 3 && layout.pos == 2) {
						continue // each timeout costs two action deadlines: the full matrix has them all
					}
					cs = append(cs, matrixCase{mode: mode, layout: filesOnly(layout.n), pos: layout.pos, op: op, kind: kind})
				}
			}
		}
		cs = append(cs, matrixCase{mode: mode, layout: filesOnly(2), op: "generate", kind: faultError},
			matrixCase{mode: mode, layout: filesOnly(2), op: "monitor", kind: faultError})
	}
	cs = append(cs, realStoreCases()...)
	cs = append(cs, kindCases()...)
	cs = append(cs, keyringCases()...)
	// The findings of issue 13 that are cells of the matrix.
	cs = append(cs,
		matrixCase{name: "finding1-single-role-failed-publish", mode: policy.ModeSingleRole, layout: filesOnly(2), pos: 1, op: "publish", kind: faultError},
		matrixCase{name: "finding2-store-gone-during-compensation", mode: policy.ModeBlueGreen, layout: filesOnly(2), pos: 0, op: "publish", kind: faultGone},
		matrixCase{name: "finding5-previous-after-put-back", mode: policy.ModeBlueGreen, layout: filesOnly(2), pos: 1, op: "publish", kind: faultError},
		// Issue 20: single-role stages, then re-keys, then publishes; the
		// re-key fails after the stores staged the new version.
		matrixCase{name: "issue20-single-role-rekey-after-stage", mode: policy.ModeSingleRole, layout: filesOnly(2), op: "rekey", kind: faultError},
	)
	return cs
}

// realStoreCases put real Vault and AWS (moto) stores in positions 1–3:
// the faulty one fails its publish (error, timeout), takes the publish
// and then is gone through its compensation (a real outage: its proxy is
// down), or is unreachable from the end of publish, through verify and
// retire (retire). The default cells are blue/green and single-role with
// error and gone on publish and an outage at retire; MATRIX_FULL adds the
// timeouts and the token mode.
func realStoreCases() []matrixCase {
	var cs []matrixCase
	modes := []string{policy.ModeBlueGreen, policy.ModeSingleRole}
	if matrixFull {
		modes = append(modes, "token")
	}
	for _, mode := range modes {
		for _, lp := range []struct {
			layout []string
			pos    int
		}{
			{[]string{"files", "vault", "aws"}, 1},
			{[]string{"files", "vault", "aws"}, 2},
			{[]string{"aws", "files"}, 0},
			{[]string{"vault"}, 0},
			// Issue 19: the faulty store is a shared document.
			{[]string{"files", "vault-shared", "aws-shared"}, 1},
			{[]string{"files", "vault-shared", "aws-shared"}, 2},
			{[]string{"files-shared", "aws"}, 0},
		} {
			for _, f := range []struct {
				op   string
				kind faultKind
			}{{"publish", faultError}, {"publish", faultGone}, {"retire", faultGone}, {"publish", faultTimeout}, {"retire", faultTimeout}} {
				if f.kind == faultTimeout && !matrixFull {
					continue // each costs action deadlines: the full matrix has them
				}
				cs = append(cs, matrixCase{mode: mode, layout: lp.layout, pos: lp.pos, op: f.op, kind: f.kind})
			}
		}
	}
	return cs
}

// TestFailurePathMatrix runs every cell: two good rotations, a faulty one,
// the fault healed and the run carried on, and a good one after; the
// invariant is checked after each run and clients log in throughout.
func TestFailurePathMatrix(t *testing.T) {
	t.Parallel()
	cases := matrixCases()
	if os.Getenv("MATRIX_SHORT") != "" {
		cases = cases[:6]
	}
	// One Vault and one moto for the cells with real stores, stopped
	// after the last cell (a parent's cleanup waits for its parallel
	// subtests).
	srv := &matrixServers{}
	t.Cleanup(srv.close)
	for _, c := range cases {
		c := c
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			w := newMatrixWorld(t, c.mode, c.layout, srv)
			stop := w.clients()
			for i := 0; i < 2; i++ {
				res := w.run(rotation.Options{Wait: true})
				require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
				w.check(fmt.Sprintf("good rotation %d", i+1), true)
			}
			switch c.op {
			case "generate", "rekey":
				w.rot.mu.Lock()
				w.rot.op, w.rot.armed = c.op, true
				w.rot.mu.Unlock()
			case "monitor":
				w.rot.mu.Lock()
				w.rot.op, w.rot.armed = "test", true
				w.rot.mu.Unlock()
			case "retire":
				// Every store takes the version; then the faulty one is
				// gone (its proxy down) or hangs on every call, through
				// verify and retire.
				st := w.stores[c.pos]
				var published atomic.Int32
				w.engine.Hooks.After = func(_ string, step state.Step) error {
					if step == state.StepPublish && int(published.Add(1)) == len(w.stores) {
						if c.kind == faultTimeout {
							st.arm("*", faultTimeout)
						} else {
							st.goAway()
						}
					}
					return nil
				}
			default:
				w.stores[c.pos].arm(c.op, c.kind)
				if c.kind == faultGone && c.pos+1 < len(w.stores) {
					// The store takes the version and goes away; the next
					// one refuses, so compensation needs the gone store.
					w.stores[c.pos+1].arm("publish", faultError)
				}
			}
			res := w.run(rotation.Options{Wait: true})
			w.engine.Hooks = rotation.Hooks{}
			t.Logf("the faulty run: %s at %s", res.Status, res.Step)
			if (c.kind != faultGone && c.op != "retire") || dualKey(c.mode) {
				// (A store that went away after taking the version stops
				// only a run that still has to observe it: the retire of
				// a dual-key mode.)
				require.NotEqual(t, state.RunSucceeded, res.Status, "the fault must stop the run: %+v", res)
			}
			ended := res.Status == state.RunFailed || res.Status == state.RunRolledBack
			w.check("after the faulty run ("+string(res.Status)+")", ended)

			w.rot.mu.Lock()
			w.rot.armed = false
			w.rot.mu.Unlock()
			for _, st := range w.stores {
				st.heal()
			}
			switch res.Status {
			case state.RunNeedsAttention:
				res = w.run(rotation.Options{Wait: true})
				require.Equal(t, state.RunFailed, res.Status, "the compensation completes once the store is back: %+v", res)
				w.check("after the compensation completed", true)
			case state.RunWaiting:
				// A retire that could not observe every store waits; with
				// the store back the run completes.
				require.Equal(t, "retire", string(res.Step), "%+v", res)
				res = w.run(rotation.Options{Wait: true})
				require.Equal(t, state.RunSucceeded, res.Status, "the waiting run completes once the store is back: %+v", res)
				w.check("after the waiting run completed", true)
			}
			res = w.run(rotation.Options{Wait: true})
			require.Equal(t, state.RunSucceeded, res.Status, "the next run rotates: %+v", res)
			w.check("good rotation after the fault", true)
			if k, ok := w.kind.(*keyringMatrixKind); ok {
				k.shed(w)
			}
			failures := stop()
			if c.mode != policy.ModeSingleRole {
				require.Empty(t, failures, "no client may fail with what a store publishes")
			} else {
				t.Logf("single-role: %d failed client logins (its switch is not atomic)", len(failures))
			}
			if k, ok := w.kind.(*keyringMatrixKind); ok {
				w.saw(k.secrets()...) // each key alone, not only whole rings
				t.Logf("key ring: %s", k.summary(w))
			}
			w.noPlaintext()
		})
	}
}
