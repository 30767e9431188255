package rotation_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/checks"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/keyring"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// The key ring's cells of the failure-path matrix (issue 18). A ring has
// no target: "the published credential works" means that the ring each
// store publishes verifies every token that a key which may still be
// signing has signed, and signs tokens the other rings verify. So the
// kind keeps, per key id, the last token signed with it (a token signed
// later by the same key is as hard to verify, and expires later); works
// verifies every token of that pool that has not expired with the ring,
// then signs one with it and adds it. The lifetime is short
// (matrixRingLifetime), so keys leave the rings during a cell, at the
// rotator's own pace, and a token is checked for as long as it lives.
//
// Clients are appsecret.KeyRing readers, as applications are: client i
// re-reads what store i (mod the stores) publishes every 50 ms, loads it
// (through a files store of its own, which appsecret reads), signs a
// token and verifies the pool; their handlers answer the http check that
// verify waits on, as in the keyring engine tests (policy requires an
// http or delay check for rings, and on_timeout: hold).
const matrixKeyring = "keyring"

// matrixRingLifetime is the rings' max_token_lifetime, and the tokens'.
const matrixRingLifetime = time.Second

// matrixRingClients is how many appsecret.KeyRing clients a cell runs.
const matrixRingClients = 3

type ringToken struct {
	token string
	exp   time.Time
}

// keyringMatrixKind is a cell's ring: its token pool and its clients.
type keyringMatrixKind struct {
	t       *testing.T
	mu      sync.Mutex
	tokens  map[string]ringToken // key id -> the last token it signed
	keys    map[string]string    // key id -> its material, base64 (searched by noPlaintext)
	signed  int                  // tokens signed
	clients []*ringClient
}

func newKeyringMatrixKind(t *testing.T, logger *slog.Logger) (matrixKind, rotation.Rotator) {
	life := policy.Duration(matrixRingLifetime)
	r, err := keyring.New(&policy.KeyringSpec{MaxTokenLifetime: &life}, keyring.WithLogger(logger))
	require.NoError(t, err)
	return &keyringMatrixKind{t: t, tokens: map[string]ringToken{}, keys: map[string]string{}}, r
}

// openRing makes a reader of ring (a value, as an environment variable
// would give it).
func openRing(ring string) (*appsecret.KeyRing, error) {
	return appsecret.OpenKeyRing(context.Background(), appsecret.Options{Name: "db/postgres", Env: "RING",
		Getenv: func(n string) string {
			if n == "RING" {
				return ring
			}
			return ""
		}})
}

// use is what a client does with the ring it holds: verify every live
// token of the pool, sign one and verify it, and add it to the pool.
func (k *keyringMatrixKind) use(ring *appsecret.KeyRing) error {
	r, _ := ring.Ring()
	k.mu.Lock()
	for _, key := range r.Keys {
		if _, ok := k.keys[key.ID]; !ok {
			k.keys[key.ID] = base64.StdEncoding.EncodeToString(key.Material())
		}
	}
	pool := make(map[string]ringToken, len(k.tokens))
	for kid, tok := range k.tokens {
		pool[kid] = tok
	}
	k.mu.Unlock()
	var errs []error
	for kid, tok := range pool {
		if !time.Now().Before(tok.exp) {
			continue // expired: no client may accept it any more
		}
		if _, err := ring.ParseJWT(tok.token, &jwt.RegisteredClaims{}); err != nil && !errors.Is(err, jwt.ErrTokenExpired) {
			errs = append(errs, fmt.Errorf("the ring %v does not verify a live token of key %s: %w", r.KeyIDs(), kid, err))
		}
	}
	exp := time.Now().Add(matrixRingLifetime)
	tok, err := ring.SignJWT(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(exp)})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("sign: %w", err))...)
	}
	if _, err := ring.ParseJWT(tok, &jwt.RegisteredClaims{}); err != nil && !errors.Is(err, jwt.ErrTokenExpired) {
		errs = append(errs, fmt.Errorf("the ring does not verify its own token: %w", err))
	}
	s, _ := r.Signing()
	k.mu.Lock()
	k.signed++
	if exp.After(k.tokens[s.ID].exp) {
		k.tokens[s.ID] = ringToken{token: tok, exp: exp.Truncate(time.Second)} // exp is whole seconds in the token
	}
	k.mu.Unlock()
	return errors.Join(errs...)
}

// works uses the published ring as a client would.
func (k *keyringMatrixKind) works(c rotation.Credential) error {
	ring, err := openRing(c.Secret.Reveal())
	if err != nil {
		return err
	}
	return k.use(ring)
}

// ident is the ring's signing key (the version's key id).
func (*keyringMatrixKind) ident(c rotation.Credential) string { return c.KeyID }

// live: no target holds a ring, nothing can log in but through a store.
func (*keyringMatrixKind) live() []string   { return nil }
func (*keyringMatrixKind) original() string { return "" }

// secrets are the keys the cell saw, for noPlaintext.
func (k *keyringMatrixKind) secrets() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, m := range k.keys {
		out = append(out, m)
	}
	return out
}

// shed ends a keyring cell: two more rotations, A and B, B started a
// token lifetime after A ended. Ring A gives every key demoted before
// it an end at most a lifetime after A's generate, so ring B drops them
// all: it holds the key A demoted, A's signing key, B's and the next one.
// So every key that signed a token before A, but the last one, has left
// the ring, while the clients keep verifying every live token.
func (k *keyringMatrixKind) shed(w *matrixWorld) {
	t := w.t
	t.Helper()
	before := k.signers()
	demoted, ok := w.publishedRing(0).Signing()
	require.True(t, ok)
	res := w.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	w.check("shedding, rotation A", true)
	time.Sleep(matrixRingLifetime) // a token lifetime: not an assertion, the time keys need to expire
	res = w.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	w.check("shedding, rotation B", true)
	ring := w.publishedRing(0)
	require.Len(t, ring.Keys, 4, "ring B holds A's demoted key, A's signing key, its own and the next: %v", ring.KeyIDs())
	kept := ring.KeyIDs()
	for _, kid := range before {
		if kid == demoted.ID {
			require.Contains(t, kept, kid, "the key A demoted may still have live tokens")
			continue
		}
		require.NotContains(t, kept, kid, "a key that stopped signing before A has left ring B")
	}
}

// signers lists the keys that signed a token so far.
func (k *keyringMatrixKind) signers() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for kid := range k.tokens {
		out = append(out, kid)
	}
	return out
}

// publishedRing is the ring store i publishes now.
func (w *matrixWorld) publishedRing(i int) appsecret.Ring {
	w.t.Helper()
	st := w.stores[i]
	v, err := st.direct.Read(w.ctx, rotation.ReadRequest{Path: st.path, Which: rotation.Current})
	require.NoError(w.t, err)
	r, err := appsecret.ParseRing(v.Credential.Secret.Reveal())
	require.NoError(w.t, err)
	return r
}

// summary says how many keys signed tokens in the cell and how many of
// them left the ring the first store publishes at the end (their tokens
// had expired), and how many tokens the clients signed.
func (k *keyringMatrixKind) summary(w *matrixWorld) string {
	r := w.publishedRing(0)
	d, err := w.stores[0].direct.Describe(w.ctx, rotation.DescribeRequest{Path: w.stores[0].path})
	require.NoError(w.t, err)
	k.mu.Lock()
	defer k.mu.Unlock()
	left := 0
	for kid := range k.tokens {
		if _, ok := r.Key(kid); !ok {
			left++
		}
	}
	return fmt.Sprintf("%d keys signed, %d of them left the ring (version %d), %d tokens signed", len(k.tokens), left, d.Current.Number, k.signed)
}

// ringClient is an application holding the ring through appsecret.KeyRing,
// which reads it from a files store of the client's own (mine) into which
// the client copies what its store publishes.
type ringClient struct {
	store *faultStore
	mine  *files.Store
	ring  *appsecret.KeyRing // the client's goroutine's only
	srv   *httptest.Server
	held  atomic.Pointer[appsecret.KeyRing] // what the handler answers with, once loaded
}

// ServeHTTP answers the http check with the ring in use; 404 before the
// client holds one.
func (c *ringClient) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := c.held.Load()
	if k == nil {
		http.Error(w, "no ring loaded yet", http.StatusNotFound)
		return
	}
	k.ServeHTTP(w, r)
}

// attach starts nothing yet: it makes the clients (after the cell's
// first ring is published, see startClients) and the http check on
// their handlers.
func (k *keyringMatrixKind) attach(w *matrixWorld) {
	w.target.OnTimeout = "hold"
	var urls []string
	for i := range matrixRingClients {
		c := &ringClient{store: w.stores[i%len(w.stores)]}
		var err error
		c.mine, err = files.New(&policy.FilesSpec{Dir: w.t.TempDir()}, "")
		require.NoError(w.t, err)
		c.srv = httptest.NewServer(c)
		w.t.Cleanup(c.srv.Close)
		k.clients = append(k.clients, c)
		urls = append(urls, c.srv.URL)
	}
	w.target.Checks = []rotation.Check{&checks.HTTP{URLs: urls, Client: k.clients[0].srv.Client()}}
}

// load copies what the client's store publishes into its own file and
// has the reader load it.
func (c *ringClient) load(ctx context.Context) error {
	v, err := c.store.direct.Read(ctx, rotation.ReadRequest{Path: c.store.path, Which: rotation.Current})
	if err != nil {
		return err
	}
	if err := c.mine.Publish(ctx, rotation.PublishRequest{Path: "ring.json", Version: v}); err != nil {
		return err
	}
	if c.ring == nil {
		c.ring, err = appsecret.OpenKeyRing(ctx, appsecret.Options{Name: "db/postgres", File: filepath.Join(c.mine.Dir(), "ring.json"),
			Getenv: func(string) string { return "" }})
		if err != nil {
			return err
		}
		c.held.Store(c.ring)
		return nil
	}
	_, err = c.ring.Refresh(ctx)
	return err
}

// startClients runs the clients until stop, which returns their
// failures. Before the first ring is published a client has nothing to
// load; its handler answers 404 until it has (the first run's check
// waits for it).
func (k *keyringMatrixKind) startClients(w *matrixWorld) (stop func() []string) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for i, c := range k.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := c.load(ctx); err == nil {
					if err := k.use(c.ring); err != nil && ctx.Err() == nil {
						r, v := c.ring.Ring()
						mu.Lock()
						failures = append(failures, fmt.Sprintf("client %d (store %s, v%d, signing with %v): %v", i, c.store.backend, v.Number, r.KeyIDs(), err))
						mu.Unlock()
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	return func() []string {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return failures
	}
}

// faultSuccessor keeps the Successor capability of the rotator a
// faultRotator wraps: without it the engine would not pass the published
// ring to Generate.
type faultSuccessor struct{ *faultRotator }

func (faultSuccessor) BuildsOnPublished() {}

var _ rotation.Successor = faultSuccessor{}

// keyringCases are the key ring's cells: a fault at generate; a publish
// that fails (the last of three files stores; AWS, the last of
// files+Vault+AWS) or takes the ring and is gone through its
// compensation (files; Vault, the middle of files+Vault+AWS); a store
// gone from the end of publish through retire (files; AWS before files);
// the monitor's re-test fails (the stores roll back). 8 cells; MATRIX_FULL
// adds a failed stage, a failed publish at Vault, a gone AWS at publish,
// a gone Vault at retire, Vault alone, timeouts at publish and retire
// (7 more).
func keyringCases() []matrixCase {
	fva := []string{"files", "vault", "aws"}
	cs := []matrixCase{
		{layout: filesOnly(2), pos: 0, op: "generate", kind: faultError},
		{layout: filesOnly(3), pos: 2, op: "publish", kind: faultError},
		{layout: filesOnly(2), pos: 0, op: "publish", kind: faultGone},
		{layout: filesOnly(2), pos: 1, op: "retire", kind: faultGone},
		{layout: filesOnly(2), pos: 0, op: "monitor", kind: faultError},
		{layout: fva, pos: 2, op: "publish", kind: faultError},
		{layout: fva, pos: 1, op: "publish", kind: faultGone},
		{layout: []string{"aws", "files"}, pos: 0, op: "retire", kind: faultGone},
	}
	if matrixFull {
		cs = append(cs,
			matrixCase{layout: filesOnly(3), pos: 0, op: "stage", kind: faultError},
			matrixCase{layout: fva, pos: 1, op: "publish", kind: faultError},
			matrixCase{layout: []string{"aws", "files"}, pos: 0, op: "publish", kind: faultGone},
			matrixCase{layout: fva, pos: 1, op: "retire", kind: faultGone},
			matrixCase{layout: []string{"vault"}, pos: 0, op: "publish", kind: faultGone},
			matrixCase{layout: filesOnly(3), pos: 2, op: "publish", kind: faultTimeout},
			matrixCase{layout: []string{"aws", "files"}, pos: 0, op: "retire", kind: faultTimeout},
		)
	}
	for i := range cs {
		cs[i].mode = matrixKeyring
	}
	return cs
}
