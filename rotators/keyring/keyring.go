package keyring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// Rotator makes key rings. No target holds them but the stores: the
// applications read the ring with appsecret.KeyRing.
type Rotator struct {
	spec *policy.KeyringSpec
	rand io.Reader
	now  func() time.Time
	log  *slog.Logger
	// limit is the most bytes one secret value may hold in the stores
	// the ring is published to (0: no limit), limitWhat says whose.
	limit     int
	limitWhat string
}

var (
	_ rotation.Rotator   = (*Rotator)(nil)
	_ rotation.Successor = (*Rotator)(nil)
)

// Option configures a Rotator.
type Option func(*Rotator)

// WithRand sets the random source of keys and key ids (default
// crypto/rand).
func WithRand(r io.Reader) Option { return func(k *Rotator) { k.rand = r } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(k *Rotator) { k.now = now } }

// WithValueLimit sets the most bytes one secret value may hold in the
// stores the ring is published to (policy.File.PublishLimit), and what
// that limit is, for messages: Generate refuses a ring whose published
// value would be larger, before anything is published.
func WithValueLimit(limit int, what string) Option {
	return func(k *Rotator) { k.limit, k.limitWhat = limit, what }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(k *Rotator) { k.log = l } }

// Validate checks a keyring configuration (the policy checks the rest,
// with positions).
func Validate(spec *policy.KeyringSpec) error {
	if spec == nil {
		return errors.New("keyring: no configuration")
	}
	minSize, ok := appsecret.MinKeySize(alg(spec))
	if !ok {
		return fmt.Errorf("keyring: algorithm %q: use HS256, HS384 or HS512", spec.Algorithm)
	}
	if n := size(spec); n < minSize || n > policy.MaxKeyringSize {
		return fmt.Errorf("keyring: size %d bytes: %s needs between %d and %d", n, alg(spec), minSize, policy.MaxKeyringSize)
	}
	if spec.MaxTokenLifetime == nil || *spec.MaxTokenLifetime <= 0 {
		return errors.New("keyring: max_token_lifetime is required (the longest lifetime of a token the keys sign)")
	}
	return nil
}

// New builds a Rotator.
func New(spec *policy.KeyringSpec, opts ...Option) (*Rotator, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	k := &Rotator{spec: spec, rand: rand.Reader, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

func alg(spec *policy.KeyringSpec) string {
	if spec.Algorithm == "" {
		return policy.DefaultKeyringAlgorithm
	}
	return spec.Algorithm
}

// size is the configured key size, else the algorithm's hash length.
func size(spec *policy.KeyringSpec) int {
	if spec.Size == 0 {
		n, _ := appsecret.MinKeySize(alg(spec))
		return n
	}
	return spec.Size
}

func (k *Rotator) field() string {
	if k.spec.Field == "" {
		return policy.DefaultKeyringField
	}
	return k.spec.Field
}

func (k *Rotator) lifetime() time.Duration { return k.spec.MaxTokenLifetime.D() }

// BuildsOnPublished implements rotation.Successor: each ring is made from
// the one the stores publish.
func (k *Rotator) BuildsOnPublished() {}

// newKey draws a key of the configured size and a key id ("k" and 16 hex
// digits) that is not in taken.
func (k *Rotator) newKey(state string, now time.Time, taken map[string]bool) (appsecret.RingKey, error) {
	material := make([]byte, size(k.spec))
	if _, err := io.ReadFull(k.rand, material); err != nil {
		return appsecret.RingKey{}, fmt.Errorf("keyring: read random bytes: %w", err)
	}
	for range 8 {
		id := make([]byte, 8)
		if _, err := io.ReadFull(k.rand, id); err != nil {
			return appsecret.RingKey{}, fmt.Errorf("keyring: read random bytes: %w", err)
		}
		kid := "k" + hex.EncodeToString(id)
		if !taken[kid] {
			taken[kid] = true
			return appsecret.NewRingKey(kid, state, now, material), nil
		}
	}
	return appsecret.RingKey{}, errors.New("keyring: no fresh key id after 8 draws: is the random source broken?")
}

// Successor returns the ring that follows cur at now, with next as its
// new next key: cur's next key signs; cur's signing key is accepted (it
// may still be signing where a client has not loaded the new ring); a key
// that was accepted without an end gets one, now plus the lifetime (it
// stopped signing everywhere before this rotation began: the run that
// demoted it verified that every client loaded the ring that did); a key
// whose end has passed is dropped. A ring without a next key (made by
// hand) keeps its signing key and only gains next: a key that no client
// holds yet never signs.
func Successor(cur appsecret.Ring, next appsecret.RingKey, now time.Time, lifetime time.Duration) appsecret.Ring {
	out := appsecret.Ring{Algorithm: cur.Algorithm, MaxTokenLifetime: lifetime}
	_, hasNext := cur.Next()
	for _, key := range cur.Keys {
		switch {
		case key.State == appsecret.KeyNext:
			key.State = appsecret.KeySigning
		case key.State == appsecret.KeySigning && hasNext:
			key.State, key.AcceptUntil = appsecret.KeyAccepted, time.Time{}
		case key.State == appsecret.KeySigning:
			// Stays signing: nothing was announced to take over.
		case key.AcceptUntil.IsZero():
			key.AcceptUntil = now.Add(lifetime)
		case !now.Before(key.AcceptUntil):
			continue // every token it signed has expired
		}
		out.Keys = append(out.Keys, key)
	}
	out.Keys = append(out.Keys, next)
	return out
}

// Generate makes the next ring from the one the stores publish
// (GenerateRequest.Published), or a first ring (a signing key and a next
// key) when none is published. It is tested (Test) before it is
// returned. A published credential that is not a key ring is refused:
// starting afresh would drop the keys clients verify with.
func (k *Rotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	now := k.now().UTC()
	var ring appsecret.Ring
	var replaces rotation.CredentialMeta
	taken := map[string]bool{}
	if req.Published != nil {
		cur, err := appsecret.ParseRing(req.Published.Secret.Reveal())
		if err != nil {
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf("keyring %s: the published ring cannot be built on: %w; "+
				"put a valid ring back (`rotator rollback`) rather than start afresh, which would drop the keys clients verify with", req.SecretID, err))
		}
		if cur.Algorithm != alg(k.spec) {
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf("keyring %s: the published ring is %s, the policy says %s: "+
				"a ring keeps one algorithm (a client verifying with the old one would refuse the new tokens); publish a new secret instead",
				req.SecretID, cur.Algorithm, alg(k.spec)))
		}
		for _, id := range cur.KeyIDs() {
			taken[id] = true
		}
		next, err := k.newKey(appsecret.KeyNext, now, taken)
		if err != nil {
			return rotation.GenerateResponse{}, err
		}
		ring = Successor(cur, next, now, k.lifetime())
		if s, ok := cur.Signing(); ok {
			replaces = rotation.CredentialMeta{KeyID: s.ID}
		}
	} else {
		signing, err := k.newKey(appsecret.KeySigning, now, taken)
		if err != nil {
			return rotation.GenerateResponse{}, err
		}
		next, err := k.newKey(appsecret.KeyNext, now, taken)
		if err != nil {
			return rotation.GenerateResponse{}, err
		}
		ring = appsecret.Ring{Algorithm: alg(k.spec), MaxTokenLifetime: k.lifetime(), Keys: []appsecret.RingKey{signing, next}}
	}
	doc, err := ring.Encode()
	if err != nil {
		return rotation.GenerateResponse{}, fmt.Errorf("keyring %s: %w", req.SecretID, err)
	}
	if n := appsecret.PublishedSize(doc); k.limit > 0 && n > k.limit {
		// Every publish would fail: refuse before anything is published.
		// The published ring is left as it is and keeps working; its
		// accepted keys leave as their ends pass, so a later run fits.
		return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf("keyring %s: the new ring would hold %d keys, %d bytes published, above %s (%d bytes): "+
			"nothing was published and the published ring stays in use; the ring grows when rotations come faster than keys expire "+
			"(a key stays max_token_lifetime %s after the rotation that follows the one it stopped signing at): wait until older keys have expired, or shorten max_token_lifetime",
			req.SecretID, len(ring.Keys), n, k.limitWhat, k.limit, k.lifetime()))
	}
	signing, _ := ring.Signing()
	c := rotation.Credential{Secret: secret.New(doc), Field: k.field(), KeyID: signing.ID}
	if err := k.Test(ctx, rotation.TestRequest{SecretID: req.SecretID, Credential: c}); err != nil {
		return rotation.GenerateResponse{}, err
	}
	k.log.InfoContext(ctx, "key ring generated", "secret", req.SecretID, "run_id", req.RunID, "ring", ring, "fingerprint", c.Secret.Fingerprint())
	resp := rotation.GenerateResponse{Credential: c}
	if req.Current.IsZero() {
		resp.Replaces = replaces
	}
	return resp, nil
}

// Test checks a ring as a client uses it: it parses (one signing key, at
// most one next, distinct ids, keys at least the algorithm's hash long),
// and a token signed with its signing key verifies with it by key id.
func (k *Rotator) Test(_ context.Context, req rotation.TestRequest) error {
	ring, err := appsecret.ParseRing(req.Credential.Secret.Reveal())
	if err != nil {
		return rotation.Permanent(fmt.Errorf("keyring %s: %s: %w", req.SecretID, req.Credential.Meta(), err))
	}
	s, _ := ring.Signing()
	if req.Credential.KeyID != "" && s.ID != req.Credential.KeyID {
		return rotation.Permanent(fmt.Errorf("keyring %s: the ring signs with key %s, its version says %s", req.SecretID, s.ID, req.Credential.KeyID))
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(ring.Algorithm), jwt.MapClaims{"sub": "rotator-test"})
	tok.Header["kid"] = s.ID
	signed, err := tok.SignedString(s.Material())
	if err != nil {
		return rotation.Permanent(fmt.Errorf("keyring %s: sign with key %s: %w", req.SecretID, s.ID, err))
	}
	_, err = jwt.Parse(signed, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := ring.Key(kid)
		if !ok {
			return nil, appsecret.ErrUnknownKey
		}
		return key.Material(), nil
	}, jwt.WithValidMethods([]string{ring.Algorithm}))
	if err != nil {
		return rotation.Permanent(fmt.Errorf("keyring %s: a token signed with key %s does not verify: %w", req.SecretID, s.ID, err))
	}
	return nil
}

// Clients returns ErrUnsupported: which clients hold which ring is for
// the http check to find out (appsecret.KeyRing's handler).
func (k *Rotator) Clients(context.Context, rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	return rotation.ClientsResponse{}, rotation.ErrUnsupported
}

// Retire changes nothing anywhere: the old ring's keys are in the new
// ring (its signing key accepted, its next key signing), and a key leaves
// a ring only at a later generate, once every token it signed has
// expired. It refuses to retire the new ring's own signing key.
func (k *Rotator) Retire(ctx context.Context, req rotation.RetireRequest) error {
	if req.Old == req.New {
		return rotation.Permanent(fmt.Errorf("keyring %s: refusing to retire %s: it is the new ring's signing key", req.SecretID, req.Old))
	}
	k.log.InfoContext(ctx, "key ring retired: its keys stay in the new ring until the tokens they signed have expired",
		"secret", req.SecretID, "old", req.Old.String())
	return nil
}

// Restore does nothing: a ring is valid wherever the stores publish it,
// so rolling the stores back restores it (and the rolled-back ring
// accepts the newer ring's signing key: it was its next key).
func (k *Rotator) Restore(context.Context, rotation.RestoreRequest) error { return nil }

// Discard does nothing: an unpublished ring is used nowhere.
func (k *Rotator) Discard(context.Context, rotation.DiscardRequest) error { return nil }
