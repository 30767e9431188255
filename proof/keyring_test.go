package proof_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
)

// How the key ring load test's clients behave (docs/proof.md, "Key
// rings").
const (
	ringClients       = 6
	ringClientRefresh = 50 * time.Millisecond // appsecret re-reads the published file this often
	ringRotations     = 15
	ringLifetime      = 3 * time.Second // max_token_lifetime, and every token's lifetime
)

const ringLoadPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: auth/jwt
    class: admin_token
    rotator:
      keyring: {max_token_lifetime: 3s}
    publish:
      - store: local
        path: auth/jwt.json
    checks:
      - http: {urls: [%s], interval: 1s}
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// ringClient is an application: it reads the ring the files store
// publishes with appsecret.KeyRing (refreshed in the background), signs
// tokens with it and verifies tokens every client signed. Its handler,
// which the http check asks, reports the ring it uses.
type ringClient struct {
	mu   sync.Mutex
	ring *appsecret.KeyRing
}

func (c *ringClient) get() *appsecret.KeyRing { c.mu.Lock(); defer c.mu.Unlock(); return c.ring }

func (c *ringClient) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := c.get()
	if k == nil {
		http.Error(w, "no ring yet", http.StatusServiceUnavailable)
		return
	}
	k.ServeHTTP(w, r)
}

type ringToken struct {
	tok     string
	at, exp time.Time
}

// TestKeyRingLiveClients: clients that continuously sign tokens with the
// ring the files store publishes, and verify tokens any client signed up
// to max_token_lifetime ago, never fail a verification while `rotator
// run` rotates the ring again and again from a policies file, each run
// waiting (http check) until every client holds the new ring.
// PROOF_ROTATIONS=N sets another number of rotations.
func TestKeyRingLiveClients(t *testing.T) {
	n := ringRotations
	if v, err := strconv.Atoi(os.Getenv("PROOF_ROTATIONS")); err == nil && v > 0 {
		n = v
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets", "auth", "jwt.json")
	clients := make([]*ringClient, ringClients)
	var urls []string
	for i := range clients {
		clients[i] = &ringClient{}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := &http.Server{Handler: clients[i], ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		urls = append(urls, strconv.Quote("http://"+ln.Addr().String()+"/keyring"))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(fmt.Sprintf(ringLoadPolicy, strings.Join(urls, ", "))), 0o600))
	bin := loadBinary()
	key, err := exec.Command(bin, "keygen").Output()
	require.NoError(t, err)
	env := append(os.Environ(), "DATABASE_URL="+newStateDSN(t), "ROTATOR_STATE_KEY="+strings.TrimSpace(string(key)),
		"ROTATOR_POLICIES=", "ROTATOR_LOG_FORMAT=json")
	var outputs strings.Builder
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "rotator %v:\n%s", args, out)
		outputs.Write(out)
		return string(out)
	}
	cli("migrate")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var signed, verified, failures, maxKeys atomic.Int64
	var oldest atomic.Int64 // the oldest token verified, in ms
	var mu sync.Mutex
	var pool []ringToken // the last tokens any client signed
	var firstErrors []string
	fail := func(msg string) {
		failures.Add(1)
		mu.Lock()
		if len(firstErrors) < 5 {
			firstErrors = append(firstErrors, msg)
		}
		mu.Unlock()
	}
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The client starts once a first ring is published.
			var k *appsecret.KeyRing
			for ctx.Err() == nil && k == nil {
				if r, err := appsecret.OpenKeyRing(ctx, appsecret.Options{Name: "auth/jwt", File: file, Refresh: ringClientRefresh,
					Getenv: func(string) string { return "" }}); err == nil {
					k = r
				} else {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if k == nil {
				return
			}
			k.Start(ctx)
			defer k.Close()
			c.mu.Lock()
			c.ring = k
			c.mu.Unlock()
			rnd := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				now := time.Now()
				// NumericDate keeps whole seconds (jwt.TimePrecision):
				// the token expires at exp, not at now + lifetime.
				exp := jwt.NewNumericDate(now.Add(ringLifetime))
				tok, err := k.SignJWT(jwt.RegisteredClaims{Subject: fmt.Sprint(i), IssuedAt: jwt.NewNumericDate(now), ExpiresAt: exp})
				if err != nil {
					fail(fmt.Sprintf("client %d: sign: %v", i, err))
					continue
				}
				signed.Add(1)
				if r, _ := k.Ring(); int64(len(r.Keys)) > maxKeys.Load() {
					maxKeys.Store(int64(len(r.Keys)))
				}
				mu.Lock()
				pool = append(pool, ringToken{tok, now, exp.Time})
				if len(pool) > 4000 {
					pool = pool[len(pool)-4000:]
				}
				// The token just signed, and two others: one of any age,
				// one of the oldest still live.
				picks := []ringToken{pool[len(pool)-1], pool[rnd.IntN(len(pool))], pool[0]}
				mu.Unlock()
				for _, p := range picks {
					// Leave 100ms to the expiry: a token that expires
					// while it is being verified is refused, and rightly.
					if time.Until(p.exp) < 100*time.Millisecond {
						continue
					}
					var claims jwt.RegisteredClaims
					_, err := k.ParseJWT(p.tok, &claims)
					verified.Add(1)
					if err != nil {
						if errors.Is(err, jwt.ErrTokenExpired) && time.Now().After(p.exp) {
							continue
						}
						fail(fmt.Sprintf("client %d: verify a token of %s: %v", i, time.Since(p.at).Round(time.Millisecond), err))
						continue
					}
					if age := time.Since(p.at).Milliseconds(); age > oldest.Load() {
						oldest.Store(age)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// The first ring: the clients open it, and the http check waits for
	// them.
	require.Contains(t, cli("run", "--secret", "auth/jwt"), "auth/jwt: rotated")
	start := time.Now()
	for i := 0; i < n; i++ {
		require.Contains(t, cli("run", "--secret", "auth/jwt"), "auth/jwt: rotated", "rotation %d", i+1)
	}
	took := time.Since(start)
	// Tokens signed before the last rotation still verify after it.
	time.Sleep(ringLifetime / 2)
	stop()
	wg.Wait()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var doc map[string]string
	require.NoError(t, json.Unmarshal(b, &doc))
	t.Logf("key ring: %d rotations in %s (%s each), %d clients, %d tokens signed, %d verifications, %d failed %q; oldest token verified %dms; at most %d keys in a ring",
		n, took.Round(time.Millisecond), (took / time.Duration(n)).Round(time.Millisecond), ringClients, signed.Load(), verified.Load(),
		failures.Load(), firstErrors, oldest.Load(), maxKeys.Load())
	require.Zero(t, failures.Load(), "no client may fail to verify a live token: %q", firstErrors)
	require.Greater(t, verified.Load(), int64(n*ringClients), "the clients kept verifying")
	require.Greater(t, oldest.Load(), int64(1500), "tokens verified across rotations, up to their lifetime")
	require.Equal(t, strconv.Itoa(n+1), doc["version"], "every run published a new version")
	// No key material in what rotator printed (the ring's keys are in the
	// published document only).
	r, err := appsecret.ParseRing(doc["keyring"])
	require.NoError(t, err)
	for _, k := range r.Keys {
		require.NotContains(t, outputs.String(), base64.StdEncoding.EncodeToString(k.Material()))
	}
}
