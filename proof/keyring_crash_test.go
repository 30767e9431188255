package proof_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/state"
)

// ringCrashPolicy publishes a key ring to two stores (two files
// directories), so a kill inside publish leaves them on different rings;
// one client reads each, and the http check asks both.
const ringCrashPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
  - name: mirror
    files:
      dir: mirror
secrets:
  - id: auth/jwt
    class: admin_token
    rotator:
      keyring: {max_token_lifetime: 1h}
    publish:
      - store: local
        path: auth/jwt.json
      - store: mirror
        path: auth/jwt.json
    checks:
      - http: {urls: [%s], interval: 1s}
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// ringCrashWorld is the rotator CLI rotating a key ring, and two clients
// (appsecret.KeyRing on each store's file) that reload when the http
// check asks them and when the test checks them.
type ringCrashWorld struct {
	t       *testing.T
	dir     string
	env     []string
	files   []string
	mu      sync.Mutex
	clients []*appsecret.KeyRing
	// tokens holds one token per client per point, all live for an hour:
	// every one must verify at every client, through every crash.
	tokens []string
}

func newRingCrashWorld(t *testing.T) *ringCrashWorld {
	t.Helper()
	w := &ringCrashWorld{t: t, dir: t.TempDir()}
	w.files = []string{filepath.Join(w.dir, "secrets", "auth", "jwt.json"), filepath.Join(w.dir, "mirror", "auth", "jwt.json")}
	w.clients = make([]*appsecret.KeyRing, len(w.files))
	var urls []string
	for i := range w.files {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			k := w.client(i)
			if k == nil {
				http.Error(rw, "no ring yet", http.StatusServiceUnavailable)
				return
			}
			_, _ = k.Refresh(r.Context())
			k.ServeHTTP(rw, r)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		urls = append(urls, strconv.Quote("http://"+ln.Addr().String()+"/keyring"))
	}
	w.env = clitest.Setup(t, binary, w.dir, newStateDSN(t), fmt.Sprintf(ringCrashPolicy, strings.Join(urls, ", ")),
		"ROTATOR_LEASE_TTL=1s") // a killed process's lease frees itself after 1s
	out, code := w.cli(nil, "migrate")
	require.Equal(t, 0, code, out)
	return w
}

// client returns client i, opening it once its store holds a ring.
func (w *ringCrashWorld) client(i int) *appsecret.KeyRing {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k := w.clients[i]; k != nil {
		return k
	}
	k, err := appsecret.OpenKeyRing(context.Background(), appsecret.Options{Name: "auth/jwt", File: w.files[i], Getenv: func(string) string { return "" }})
	if err != nil {
		return nil
	}
	w.clients[i] = k
	return k
}

func (w *ringCrashWorld) cli(extra []string, args ...string) (string, int) {
	w.t.Helper()
	var buf bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Dir, cmd.Env = w.dir, append(slices.Clone(w.env), extra...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return buf.String(), ee.ExitCode()
	}
	require.NoError(w.t, err)
	return buf.String(), 0
}

// ring reads what store i publishes.
func (w *ringCrashWorld) ring(i int) (appsecret.Ring, int) {
	w.t.Helper()
	b, err := os.ReadFile(w.files[i])
	require.NoError(w.t, err)
	var doc map[string]string
	require.NoError(w.t, json.Unmarshal(b, &doc))
	r, err := appsecret.ParseRing(doc["keyring"])
	require.NoError(w.t, err, "store %d publishes a ring that parses", i)
	n, _ := strconv.Atoi(doc["version"])
	return r, n
}

// check is the invariant at any moment: every store publishes a ring;
// each ring verifies what the other signs; every client (reloaded) signs a
// token, and every token any client signed so far verifies at every
// client.
func (w *ringCrashWorld) check(point string) {
	w.t.Helper()
	a, _ := w.ring(0)
	b, _ := w.ring(1)
	for _, pair := range [][2]appsecret.Ring{{a, b}, {b, a}} {
		s, _ := pair[0].Signing()
		_, ok := pair[1].Key(s.ID)
		require.True(w.t, ok, "%s: the stores' rings verify each other's tokens (%v, %v)", point, a, b)
	}
	for i := range w.clients {
		k := w.client(i)
		require.NotNil(w.t, k, point)
		_, err := k.Refresh(context.Background())
		require.NoError(w.t, err, point)
		tok, err := k.SignJWT(jwt.RegisteredClaims{Subject: point, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))})
		require.NoError(w.t, err, point)
		w.tokens = append(w.tokens, tok)
	}
	for i := range w.clients {
		k := w.client(i)
		for j, tok := range w.tokens {
			_, err := k.ParseJWT(tok, &jwt.RegisteredClaims{})
			require.NoError(w.t, err, "%s: client %d verifies token %d", point, i, j)
		}
	}
}

// resume runs `rotator run` until the killed process's lease has expired
// and the run completes.
func (w *ringCrashWorld) resume(point string) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := w.cli(nil, "run", "--secret", "auth/jwt")
		if code == 5 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		require.Equal(w.t, 0, code, "%s: the interrupted run resumes and completes:\n%s", point, out)
		require.Contains(w.t, out, "auth/jwt: rotated", point)
		return
	}
}

// TestKeyRingCrashAnywhere kills `rotator run` with SIGKILL at every step
// boundary of a key ring rotation (ROTATOR_TEST_FAULT=pause:WHEN:STEP),
// checks the invariant at the kill, resumes, and checks that the resumed
// run published, to both stores, the ring whose signing key is the one
// announced before the kill.
func TestKeyRingCrashAnywhere(t *testing.T) {
	t.Parallel()
	w := newRingCrashWorld(t)
	out, code := w.cli(nil, "run", "--secret", "auth/jwt")
	require.Equal(t, 0, code, out)
	w.check("first ring")
	kills := 0
	for _, step := range []state.Step{state.StepGenerate, state.StepStage, state.StepPublish, state.StepRetire, state.StepMonitor} {
		for _, when := range []string{"before", "after"} {
			point := "pause:" + when + ":" + string(step)
			before, v := w.ring(0)
			announced, _ := before.Next()
			cmd := exec.Command(binary, "run", "--secret", "auth/jwt")
			cmd.Dir, cmd.Env = w.dir, append(slices.Clone(w.env), "ROTATOR_TEST_FAULT="+point)
			pr, pw, err := os.Pipe()
			require.NoError(t, err)
			cmd.Stdout, cmd.Stderr = pw, pw
			require.NoError(t, cmd.Start())
			_ = pw.Close()
			r := bufio.NewReader(pr)
			for {
				line, err := r.ReadString('\n')
				require.NoError(t, err, "%s: the process ended before reaching the point", point)
				if strings.HasPrefix(line, "ROTATOR_TEST_FAULT pause ") {
					break
				}
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()
			_ = pr.Close()
			kills++
			w.check(point + " (killed)")
			w.resume(point)
			w.check(point + " (resumed)")
			after, va := w.ring(0)
			mirror, vm := w.ring(1)
			s, _ := after.Signing()
			require.Equal(t, announced.ID, s.ID, "%s: the resumed ring signs with the key announced before the kill", point)
			require.Equal(t, after.KeyIDs(), mirror.KeyIDs(), "%s: both stores publish the same ring", point)
			require.Equal(t, va, vm, point)
			require.Greater(t, va, v, point)
		}
	}
	t.Logf("key ring: %d SIGKILLs at step boundaries; every one resumed and completed; %d tokens signed across them all verify at both clients", kills, len(w.tokens))
}
