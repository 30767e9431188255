package appsecret_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/keyring"
	"github.com/rotator/rotator/stores/files"
)

// clock is a settable clock shared by the rotator and the readers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ringWorld is a keyring rotator publishing to a files store, the way the
// engine drives them: each ring is built on what the store publishes.
type ringWorld struct {
	t     *testing.T
	clock *clock
	rot   *keyring.Rotator
	store *files.Store
	path  string
	file  string
	n     int64
}

const ringLifetime = time.Hour

func newRingWorld(t *testing.T) *ringWorld {
	t.Helper()
	dir := t.TempDir()
	st, err := files.New(&policy.FilesSpec{Dir: dir}, "")
	require.NoError(t, err)
	c := &clock{t: time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)}
	life := policy.Duration(ringLifetime)
	rot, err := keyring.New(&policy.KeyringSpec{MaxTokenLifetime: &life}, keyring.WithClock(c.Now))
	require.NoError(t, err)
	w := &ringWorld{t: t, clock: c, rot: rot, store: st, path: "auth/jwt.json", file: filepath.Join(dir, "auth", "jwt.json")}
	w.rotate()
	return w
}

// rotate generates the next ring on the published one and publishes it.
func (w *ringWorld) rotate() {
	w.t.Helper()
	ctx := context.Background()
	var pub *rotation.Credential
	if v, err := w.store.Read(ctx, rotation.ReadRequest{Path: w.path}); err == nil {
		pub = &v.Credential
	} else {
		require.ErrorIs(w.t, err, rotation.ErrNotFound)
	}
	w.n++
	run := fmt.Sprintf("run-%d", w.n)
	resp, err := w.rot.Generate(ctx, rotation.GenerateRequest{SecretID: "auth/jwt", RunID: run, Published: pub})
	require.NoError(w.t, err)
	require.NoError(w.t, w.store.Publish(ctx, rotation.PublishRequest{Path: w.path,
		Version: rotation.Version{Number: w.n, RunID: run, RotatedAt: w.clock.Now(), Credential: resp.Credential}}))
}

func (w *ringWorld) open() *appsecret.KeyRing {
	w.t.Helper()
	k, err := appsecret.OpenKeyRing(context.Background(), appsecret.Options{Name: "auth/jwt", File: w.file, Now: w.clock.Now, Getenv: env(nil)})
	require.NoError(w.t, err)
	return k
}

func sign(t *testing.T, k *appsecret.KeyRing, now time.Time, sub string) string {
	t.Helper()
	tok, err := k.SignJWT(jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ringLifetime))})
	require.NoError(t, err)
	return tok
}

func verify(k *appsecret.KeyRing, tok string) error {
	_, err := k.ParseJWT(tok, &jwt.RegisteredClaims{})
	return err
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p, _, err := jwt.NewParser().ParseUnverified(tok, &jwt.RegisteredClaims{})
	require.NoError(t, err)
	kid, _ := p.Header["kid"].(string)
	return kid
}

// A token signed before a rotation verifies through every rotation until
// it expires, and its key leaves the ring only after max_token_lifetime.
// Two readers that load each ring at different times (one lags a ring
// behind) verify each other's tokens at every step.
func TestKeyRingTokensSurviveRotations(t *testing.T) {
	t.Parallel()
	w := newRingWorld(t)
	fast, slow := w.open(), w.open()
	ctx := context.Background()

	type issued struct {
		tok string
		exp time.Time
	}
	var live []issued
	first := sign(t, fast, w.clock.Now(), "first")
	firstKid, firstExp := kidOf(t, first), w.clock.Now().Add(ringLifetime)
	live = append(live, issued{first, firstExp})
	left := false
	// Rotations every 20 minutes: a key signs for 20 minutes and must stay
	// in the ring an hour after it stopped.
	for i := 0; i < 12; i++ {
		w.clock.Add(20 * time.Minute)
		w.rotate()
		// fast loads the new ring at once; slow only now and then, so it
		// holds the previous ring while fast signs with the new one.
		_, err := fast.Refresh(ctx)
		require.NoError(t, err)
		for _, k := range []*appsecret.KeyRing{fast, slow} {
			live = append(live, issued{sign(t, k, w.clock.Now(), fmt.Sprintf("r%d", i)), w.clock.Now().Add(ringLifetime)})
		}
		for _, k := range []*appsecret.KeyRing{fast, slow} {
			for _, is := range live {
				if w.clock.Now().Before(is.exp) {
					require.NoError(t, verify(k, is.tok), "rotation %d: a live token (kid %s) must verify", i, kidOf(t, is.tok))
				}
			}
		}
		// Now slow catches up (clients load the ring before the next
		// rotation: what the verify step waits for).
		_, err = slow.Refresh(ctx)
		require.NoError(t, err)
		r, _ := fast.Ring()
		if _, ok := r.Key(firstKid); !ok && !left {
			left = true
			require.False(t, w.clock.Now().Before(firstExp), "the first key left the ring at %s, before its token expired at %s", w.clock.Now(), firstExp)
			err := verify(fast, first)
			require.Error(t, err)
		}
	}
	require.True(t, left, "the first key never left the ring")
	r, _ := fast.Ring()
	require.LessOrEqual(t, len(r.Keys), 7, "keys that stopped signing an hour ago must leave: %v", r)
}

// A token with a kid the ring does not hold, without a kid, or of
// another algorithm is refused; so is a token signed with a ring key's id
// but another key.
func TestKeyRingRefusesUnknownKeys(t *testing.T) {
	t.Parallel()
	w := newRingWorld(t)
	k := w.open()
	now := w.clock.Now()
	claims := jwt.RegisteredClaims{Subject: "x", ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}

	other := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	other.Header["kid"] = "kdeadbeefdeadbeef"
	tok, err := other.SignedString([]byte(strings.Repeat("x", 32)))
	require.NoError(t, err)
	err = verify(k, tok)
	require.ErrorIs(t, err, appsecret.ErrUnknownKey)

	noKid, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(strings.Repeat("x", 32)))
	require.NoError(t, err)
	require.ErrorIs(t, verify(k, noKid), appsecret.ErrUnknownKey)

	r, _ := k.Ring()
	s, _ := r.Signing()
	forged := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	forged.Header["kid"] = s.ID
	tok, err = forged.SignedString([]byte(strings.Repeat("y", 32)))
	require.NoError(t, err)
	require.ErrorIs(t, verify(k, tok), jwt.ErrTokenSignatureInvalid)

	hs512 := jwt.NewWithClaims(jwt.SigningMethodHS512, claims)
	hs512.Header["kid"] = s.ID
	tok, err = hs512.SignedString(s.Material())
	require.NoError(t, err)
	require.Error(t, verify(k, tok), "a token of another algorithm than the ring's")

	good := sign(t, k, now, "ok")
	require.NoError(t, verify(k, good))
	require.Equal(t, s.ID, kidOf(t, good))
}

// SignJWT refuses a token that could outlive its key: no expiry, or one
// past max_token_lifetime.
func TestKeyRingSignBoundsLifetime(t *testing.T) {
	t.Parallel()
	w := newRingWorld(t)
	k := w.open()
	now := w.clock.Now()
	_, err := k.SignJWT(jwt.RegisteredClaims{Subject: "x"})
	require.ErrorContains(t, err, "must expire")
	_, err = k.SignJWT(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(ringLifetime + time.Minute))})
	require.ErrorContains(t, err, "max_token_lifetime")
	_, err = k.SignJWT(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(ringLifetime))})
	require.NoError(t, err)
}

// The handler reports the ring in use and its key ids, never a key; a
// ring that does not parse is not loaded (the one in use stays).
func TestKeyRingHandlerAndBadRing(t *testing.T) {
	t.Parallel()
	w := newRingWorld(t)
	k := w.open()
	r, v := k.Ring()
	srv := httptest.NewServer(k)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	s, _ := r.Signing()
	n, _ := r.Next()
	require.Contains(t, string(body), `"signing_key":"`+s.ID+`"`)
	require.Contains(t, string(body), `"next_key":"`+n.ID+`"`)
	require.Contains(t, string(body), `"fingerprint":"`+v.Fingerprint+`"`)
	require.Equal(t, fmt.Sprint(v.Number), resp.Header.Get("X-Secret-Version"))
	for _, key := range r.Keys {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(key.Material()), base64.RawURLEncoding.EncodeToString(key.Material())} {
			require.NotContains(t, string(body), enc)
			require.NotContains(t, fmt.Sprintf("%v %+v %s", r, key, r), enc)
			// The reader itself, and a struct of the application's that
			// holds it, printed or logged: no key material.
			holder := struct{ ring *appsecret.KeyRing }{k}
			var logged strings.Builder
			slog.New(slog.NewTextHandler(&logged, nil)).Info("ring", "k", k, "holder", holder)
			printed := fmt.Sprintf("%v %+v %#v %s %v %+v", k, k, k, k, holder, holder) + logged.String()
			require.NotContains(t, printed, enc)
			require.Contains(t, printed, s.ID, "the key ids are shown")
			require.NotContains(t, printed, fmt.Sprint(key.Material()), "the key's bytes are not printed")
		}
	}

	// A broken ring published by hand: the reader keeps the ring in use.
	require.NoError(t, w.store.Publish(context.Background(), rotation.PublishRequest{Path: w.path, Version: rotation.Version{Number: 99, RunID: "by-hand",
		Credential: rotation.Credential{Field: "keyring", Secret: secretOf(`{"format":1,"alg":"HS256","keys":[]}`)}}}))
	_, err = k.Refresh(context.Background())
	require.True(t, errors.Is(err, appsecret.ErrBadRing), "got %v", err)
	_, still := k.Ring()
	require.Equal(t, v.Fingerprint, still.Fingerprint)
	require.NoError(t, verify(k, sign(t, k, w.clock.Now(), "still")))
}

func secretOf(s string) secret.Value { return secret.New(s) }
