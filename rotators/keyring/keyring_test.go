package keyring_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/derive"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/keyring"
	"github.com/rotator/rotator/rotators/rotatortest"
	"github.com/rotator/rotator/stores/files"
)

func spec(life time.Duration) *policy.KeyringSpec {
	d := policy.Duration(life)
	return &policy.KeyringSpec{MaxTokenLifetime: &d}
}

// login uses a ring the way an application does: the files store
// publishes it, appsecret.KeyRing reads it, signs a token and verifies it.
func login(t *testing.T, c rotation.Credential) error {
	dir := t.TempDir()
	st, err := files.New(&policy.FilesSpec{Dir: dir}, "")
	require.NoError(t, err)
	require.NoError(t, st.Publish(context.Background(), rotation.PublishRequest{Path: "ring.json",
		Version: rotation.Version{Number: 1, RunID: "login", RotatedAt: time.Now(), Credential: c}}))
	k, err := appsecret.OpenKeyRing(context.Background(), appsecret.Options{Name: "ring", File: filepath.Join(dir, "ring.json"),
		Getenv: func(string) string { return "" }})
	if err != nil {
		return err
	}
	tok, err := k.SignJWT(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))})
	if err != nil {
		return err
	}
	_, err = k.ParseJWT(tok, &jwt.RegisteredClaims{})
	return err
}

func TestConformance(t *testing.T) {
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			r, err := keyring.New(spec(time.Hour))
			require.NoError(t, err)
			return r
		},
		Login:      login,
		CanRestore: true,
		StoresOnly: true,
	})
}

func generate(t *testing.T, r *keyring.Rotator, pub *rotation.Credential) (rotation.Credential, appsecret.Ring) {
	t.Helper()
	resp, err := r.Generate(context.Background(), rotation.GenerateRequest{SecretID: "auth/jwt", RunID: "run", Published: pub})
	require.NoError(t, err)
	ring, err := appsecret.ParseRing(resp.Credential.Secret.Reveal())
	require.NoError(t, err)
	return resp.Credential, ring
}

// Each ring promotes the previous ring's next key, keeps its signing key
// accepted, and holds every key whose end has not passed.
func TestSuccessorPromotesTheAnnouncedKey(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	r, err := keyring.New(&policy.KeyringSpec{Size: 48, MaxTokenLifetime: spec(time.Hour).MaxTokenLifetime}, keyring.WithClock(func() time.Time { return now }))
	require.NoError(t, err)
	c0, r0 := generate(t, r, nil)
	s0, _ := r0.Signing()
	n0, _ := r0.Next()
	require.Len(t, r0.Keys, 2)
	require.Len(t, s0.Material(), 48)
	require.Equal(t, s0.ID, c0.KeyID, "the version's key id is the ring's signing key")
	require.Equal(t, "keyring", c0.Field)

	now = now.Add(30 * time.Minute)
	c1, r1 := generate(t, r, &c0)
	s1, _ := r1.Signing()
	require.Equal(t, n0.ID, s1.ID, "the announced key signs")
	old, ok := r1.Key(s0.ID)
	require.True(t, ok)
	require.Equal(t, appsecret.KeyAccepted, old.State)
	require.True(t, old.AcceptUntil.IsZero(), "a key demoted now may still sign where the new ring is not loaded: no end yet")

	now = now.Add(30 * time.Minute)
	c2, r2 := generate(t, r, &c1)
	old, ok = r2.Key(s0.ID)
	require.True(t, ok)
	require.Equal(t, now.Add(time.Hour), old.AcceptUntil, "stopped signing before this run: an end a lifetime from now")
	require.Len(t, r2.Keys, 4)

	now = now.Add(59 * time.Minute)
	c3, r3 := generate(t, r, &c2)
	_, ok = r3.Key(s0.ID)
	require.True(t, ok, "its end has not passed")
	now = now.Add(time.Minute)
	_, r4 := generate(t, r, &c3)
	_, ok = r4.Key(s0.ID)
	require.False(t, ok, "its end has passed: it leaves")
}

// A ring made by hand without a next key keeps its signing key and only
// announces one: a key no client holds yet never signs.
func TestRingWithoutNextOnlyAnnounces(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	hand := appsecret.Ring{Algorithm: "HS256", Keys: []appsecret.RingKey{appsecret.NewRingKey("hand", appsecret.KeySigning, now, make([]byte, 32))}}
	doc, err := hand.Encode()
	require.NoError(t, err)
	r, err := keyring.New(spec(time.Hour))
	require.NoError(t, err)
	_, ring := generate(t, r, &rotation.Credential{Secret: secret.New(doc), Field: "keyring"})
	s, _ := ring.Signing()
	require.Equal(t, "hand", s.ID)
	_, ok := ring.Next()
	require.True(t, ok)
}

// What is published but is not a ring of the configured algorithm is
// refused, permanently, without starting afresh (which would drop the
// keys clients verify with); the error holds no secret.
func TestGenerateRefusesWhatItCannotBuildOn(t *testing.T) {
	t.Parallel()
	r, err := keyring.New(spec(time.Hour))
	require.NoError(t, err)
	tok := "not-a-ring-but-a-token-s3cr3t-value"
	_, err = r.Generate(context.Background(), rotation.GenerateRequest{SecretID: "auth/jwt", RunID: "run",
		Published: &rotation.Credential{Secret: secret.New(tok), Field: "token"}})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	require.NotContains(t, err.Error(), tok)

	r512, err := keyring.New(&policy.KeyringSpec{Algorithm: "HS512", Size: 64, MaxTokenLifetime: spec(time.Hour).MaxTokenLifetime})
	require.NoError(t, err)
	c, _ := generate(t, r512, nil)
	_, err = r.Generate(context.Background(), rotation.GenerateRequest{SecretID: "auth/jwt", RunID: "run", Published: &c})
	require.ErrorContains(t, err, "the published ring is HS512, the policy says HS256")
	require.NotContains(t, err.Error(), c.Secret.Reveal())
}

func TestValidate(t *testing.T) {
	t.Parallel()
	life := spec(time.Hour).MaxTokenLifetime
	require.NoError(t, keyring.Validate(&policy.KeyringSpec{MaxTokenLifetime: life}))
	require.ErrorContains(t, keyring.Validate(&policy.KeyringSpec{Size: 16, MaxTokenLifetime: life}), "HS256 needs between 32")
	require.ErrorContains(t, keyring.Validate(&policy.KeyringSpec{Algorithm: "HS512", Size: 32, MaxTokenLifetime: life}), "HS512 needs between 64")
	require.ErrorContains(t, keyring.Validate(&policy.KeyringSpec{Algorithm: "RS256", MaxTokenLifetime: life}), "use HS256")
	require.ErrorContains(t, keyring.Validate(&policy.KeyringSpec{}), "max_token_lifetime")
}

// Without a size, a key is as long as the algorithm's hash.
func TestDefaultSizeIsTheHashLength(t *testing.T) {
	t.Parallel()
	for alg, want := range map[string]int{"HS256": 32, "HS384": 48, "HS512": 64} {
		r, err := keyring.New(&policy.KeyringSpec{Algorithm: alg, MaxTokenLifetime: spec(time.Hour).MaxTokenLifetime})
		require.NoError(t, err)
		_, ring := generate(t, r, nil)
		s, _ := ring.Signing()
		require.Len(t, s.Material(), want, alg)
		require.Equal(t, alg, ring.Algorithm)
	}
}

// MaxPublishedSize, which the policy checks, bounds the published size
// of every ring Generate makes with as many keys, for each algorithm and
// key size, and grows by one key's worth per key.
func TestMaxPublishedSizeBoundsRealRings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		alg  string
		size int
	}{{"HS256", 32}, {"HS384", 48}, {"HS512", 1024}} {
		sp := spec(24 * time.Hour)
		sp.Algorithm, sp.Size = tc.alg, tc.size
		now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
		k, err := keyring.New(sp, keyring.WithClock(func() time.Time { return now }))
		require.NoError(t, err)
		var published *rotation.Credential
		for i := range 12 {
			res, err := k.Generate(context.Background(), rotation.GenerateRequest{SecretID: "s", RunID: "r", Published: published})
			require.NoError(t, err)
			doc := res.Credential.Secret.Reveal()
			ring, err := appsecret.ParseRing(doc)
			require.NoError(t, err)
			require.LessOrEqual(t, appsecret.PublishedSize(doc), appsecret.MaxPublishedSize(tc.alg, 24*time.Hour, tc.size, len(ring.Keys)), "%s, %d keys", tc.alg, len(ring.Keys))
			c := res.Credential
			published = &c
			now = now.Add(time.Hour + time.Duration(i)*time.Nanosecond)
		}
		step := appsecret.MaxPublishedSize(tc.alg, time.Hour, tc.size, 11) - appsecret.MaxPublishedSize(tc.alg, time.Hour, tc.size, 10)
		require.Greater(t, step, tc.size*4/3, "a key's worth: its base64 and its fields")
		require.Less(t, step, tc.size*4/3+300)
	}
}

// A ring the policy accepts for a store fits it: rotated on its schedule
// for longer than its lifetime (the ring's steady state), every ring
// Generate makes (with the limit the wiring gives it) is published within
// the store's limit, the fields derived from it included (a derived field
// that uses {keyring} repeats the ring in the same secret value,
// percent-escaped in a URL). The lifetimes tried run across the AWS limit
// for hourly 1024-byte keys.
func TestValidatedRingsFitTheirStore(t *testing.T) {
	t.Parallel()
	const doc = `version: 1
stores: [{name: aws, awssm: {region: eu-west-1}}]
secrets:
  - id: auth/jwt
    class: admin_token
    interval: 1h
    rotator: {keyring: {max_token_lifetime: LIFE, size: 1024}}
    publish: [{store: aws, path: auth/jwt, derive: {DERIVE}}]
    checks: [{delay: 2m}]
    on_timeout: hold
`
	for _, tc := range []struct{ name, derive string }{
		{"ring alone", ""},
		{"a plain copy", `ring_copy: "{keyring}", kid: "{key_id}"`},
		{"in a URL", `jwks_url: "https://auth.example/keys?ring={keyring}"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			accepted := 0
			for hours := 5; hours <= 50; hours++ {
				life := time.Duration(hours) * time.Hour
				f, err := policy.Parse("policies.yaml", []byte(strings.NewReplacer("LIFE", life.String(), "DERIVE", tc.derive).Replace(doc)))
				if err != nil {
					require.ErrorContains(t, err, "the ring can outgrow store aws")
					continue
				}
				accepted++
				s := f.Secrets[0]
				lim := f.PublishLimit(s)
				var fields []rotation.DerivedField
				for name, src := range s.Publish[0].Derive {
					tmpl, err := derive.Parse(src)
					require.NoError(t, err)
					fields = append(fields, rotation.DerivedField{Name: name, Template: tmpl})
				}
				now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
				k, err := keyring.New(s.Rotator.Keyring, keyring.WithClock(func() time.Time { return now }), keyring.WithValueLimit(lim.Limit, lim.What))
				require.NoError(t, err)
				var published *rotation.Credential
				for range hours + 5 {
					res, err := k.Generate(context.Background(), rotation.GenerateRequest{SecretID: s.ID, RunID: "r", Published: published})
					require.NoError(t, err, "max_token_lifetime %s, interval 1h: the policy accepted it", life)
					d := res.Credential.Secret.Reveal()
					size := appsecret.PublishedSize(d)
					v, err := rotation.Derive(rotation.Version{Credential: res.Credential}, fields)
					require.NoError(t, err)
					for name, val := range v.Credential.Derived {
						size += len(jsonString(t, name)) + 1 + len(jsonString(t, val.Reveal())) + 1
					}
					require.LessOrEqual(t, size, policy.AWSSMValueLimit,
						"max_token_lifetime %s, interval 1h: the policy accepted it, it does not fit", life)
					c := res.Credential
					published = &c
					now = now.Add(time.Hour)
				}
			}
			require.Positive(t, accepted)
		})
	}
}

func jsonString(t *testing.T, s string) []byte {
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return b
}
