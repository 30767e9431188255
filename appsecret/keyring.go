package appsecret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The states of a key in a Ring.
const (
	// KeySigning: the key new tokens are signed with (exactly one).
	KeySigning = "signing"
	// KeyNext: the key that becomes signing at the next rotation (at most
	// one). It is accepted already, so that when some clients sign with it
	// the others, still on this ring, verify their tokens.
	KeyNext = "next"
	// KeyAccepted: a key that signed before; tokens it signed are still
	// accepted. AcceptUntil, once set, is when the last of them has
	// expired: the rotator drops the key from the first ring it makes
	// after that.
	KeyAccepted = "accepted"
)

// RingFormat is the format number of the ring document this package
// reads and the keyring rotator writes.
const RingFormat = 1

// The HMAC algorithms a ring may name, with the smallest key each takes
// (RFC 7518 section 3.2: a key at least as long as the hash).
var ringAlgorithms = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// MinKeySize returns the smallest key, in bytes, a ring of algorithm alg
// may hold, and whether alg is one a ring may name (HS256, HS384, HS512).
func MinKeySize(alg string) (int, bool) {
	n, ok := ringAlgorithms[alg]
	return n, ok
}

// Errors of the key ring.
var (
	// ErrUnknownKey: a token names a key id (kid) that is not in the
	// ring, or none at all.
	ErrUnknownKey = errors.New("unknown key id")
	// ErrBadRing: the document is not a key ring this package can use.
	ErrBadRing = errors.New("not a usable key ring")
)

// RingKey is one key of a Ring. Printing it never shows the key.
type RingKey struct {
	// ID is the key id, the kid header of the tokens it signs.
	ID string
	// State is KeySigning, KeyNext or KeyAccepted.
	State     string
	CreatedAt time.Time
	// AcceptUntil, for an accepted key, is when every token it signed has
	// expired (zero: not known yet; it may still be signing somewhere).
	AcceptUntil time.Time
	material    []byte
}

// NewRingKey returns a key with its material (copied).
func NewRingKey(id, state string, createdAt time.Time, material []byte) RingKey {
	return RingKey{ID: id, State: state, CreatedAt: createdAt, material: append([]byte(nil), material...)}
}

// Material returns the key itself (a copy).
func (k RingKey) Material() []byte { return append([]byte(nil), k.material...) }

// String describes the key without its material.
func (k RingKey) String() string {
	return fmt.Sprintf("key %s (%s, %d bytes)", k.ID, k.State, len(k.material))
}

// Format implements fmt.Formatter: every verb prints String.
func (k RingKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer without the material.
func (k RingKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON implements json.Marshaler without the material.
func (k RingKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID    string `json:"kid"`
		State string `json:"state"`
	}{k.ID, k.State})
}

// Ring is a key ring as the keyring rotator publishes it: the signing
// key, the keys still accepted, and the key about to become signing.
// Printing it (fmt, slog, JSON) shows key ids and states only; Encode
// gives the document with the keys.
type Ring struct {
	// Algorithm is the HMAC of the tokens: HS256, HS384 or HS512.
	Algorithm string
	// MaxTokenLifetime is the longest a token signed with the ring may
	// live (the policy's max_token_lifetime): SignJWT refuses longer.
	MaxTokenLifetime time.Duration
	Keys             []RingKey
}

// wireRing is the document's JSON form.
type wireRing struct {
	Format           int       `json:"format"`
	Algorithm        string    `json:"alg"`
	MaxTokenLifetime string    `json:"max_token_lifetime,omitempty"`
	Keys             []wireKey `json:"keys"`
}

type wireKey struct {
	ID          string     `json:"kid"`
	State       string     `json:"state"`
	CreatedAt   time.Time  `json:"created_at"`
	AcceptUntil *time.Time `json:"accept_until,omitempty"`
	// K is the key, base64 (standard, padded).
	K []byte `json:"k"`
}

// Encode returns the ring's document, keys included: the secret a store
// publishes. It checks the ring first.
func (r Ring) Encode() (string, error) {
	if err := r.Check(); err != nil {
		return "", err
	}
	w := wireRing{Format: RingFormat, Algorithm: r.Algorithm, Keys: make([]wireKey, 0, len(r.Keys))}
	if r.MaxTokenLifetime > 0 {
		w.MaxTokenLifetime = r.MaxTokenLifetime.String()
	}
	for _, k := range r.Keys {
		wk := wireKey{ID: k.ID, State: k.State, CreatedAt: k.CreatedAt.UTC(), K: k.material}
		if !k.AcceptUntil.IsZero() {
			t := k.AcceptUntil.UTC()
			wk.AcceptUntil = &t
		}
		w.Keys = append(w.Keys, wk)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// ParseRing reads a ring document and checks it (Check). Its errors name
// key ids, never a key.
func ParseRing(doc string) (Ring, error) {
	var w wireRing
	if err := json.Unmarshal([]byte(doc), &w); err != nil {
		// json's errors quote no input beyond a type name or an offset.
		return Ring{}, fmt.Errorf("%w: the document is not a key ring's JSON (%s)", ErrBadRing, jsonProblem(err))
	}
	if w.Format != RingFormat {
		return Ring{}, fmt.Errorf("%w: format %d, this reader knows format %d", ErrBadRing, w.Format, RingFormat)
	}
	r := Ring{Algorithm: w.Algorithm}
	if w.MaxTokenLifetime != "" {
		d, err := time.ParseDuration(w.MaxTokenLifetime)
		if err != nil || d <= 0 {
			return Ring{}, fmt.Errorf("%w: max_token_lifetime %q is not a positive duration", ErrBadRing, w.MaxTokenLifetime)
		}
		r.MaxTokenLifetime = d
	}
	for _, k := range w.Keys {
		rk := RingKey{ID: k.ID, State: k.State, CreatedAt: k.CreatedAt, material: k.K}
		if k.AcceptUntil != nil {
			rk.AcceptUntil = *k.AcceptUntil
		}
		r.Keys = append(r.Keys, rk)
	}
	return r, r.Check()
}

// jsonProblem describes a JSON error without the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "field " + te.Field + " has the wrong type"
	}
	return "unreadable"
}

// Check reports what makes r unusable: an algorithm other than HS256,
// HS384 or HS512, not exactly one signing key, more than one next key, an
// empty or repeated key id, an unknown state, a key shorter than the
// algorithm's hash.
func (r Ring) Check() error {
	minSize, ok := ringAlgorithms[r.Algorithm]
	if !ok {
		return fmt.Errorf("%w: algorithm %q (use HS256, HS384 or HS512)", ErrBadRing, r.Algorithm)
	}
	seen := map[string]bool{}
	var signing, next int
	for _, k := range r.Keys {
		switch {
		case k.ID == "":
			return fmt.Errorf("%w: a key has no id", ErrBadRing)
		case seen[k.ID]:
			return fmt.Errorf("%w: key id %s appears twice", ErrBadRing, k.ID)
		case len(k.material) < minSize:
			return fmt.Errorf("%w: key %s has %d bytes, %s needs at least %d", ErrBadRing, k.ID, len(k.material), r.Algorithm, minSize)
		}
		seen[k.ID] = true
		switch k.State {
		case KeySigning:
			signing++
		case KeyNext:
			next++
		case KeyAccepted:
		default:
			return fmt.Errorf("%w: key %s has state %q (signing, next or accepted)", ErrBadRing, k.ID, k.State)
		}
	}
	if signing != 1 {
		return fmt.Errorf("%w: %d signing keys, want exactly 1", ErrBadRing, signing)
	}
	if next > 1 {
		return fmt.Errorf("%w: %d next keys, want at most 1", ErrBadRing, next)
	}
	return nil
}

// Signing returns the signing key.
func (r Ring) Signing() (RingKey, bool) { return r.state(KeySigning) }

// Next returns the key that becomes signing at the next rotation.
func (r Ring) Next() (RingKey, bool) { return r.state(KeyNext) }

func (r Ring) state(s string) (RingKey, bool) {
	for _, k := range r.Keys {
		if k.State == s {
			return k, true
		}
	}
	return RingKey{}, false
}

// Key returns the key with id kid, whatever its state: every key of the
// ring is accepted.
func (r Ring) Key(kid string) (RingKey, bool) {
	for _, k := range r.Keys {
		if k.ID == kid {
			return k, true
		}
	}
	return RingKey{}, false
}

// KeyIDs returns the ids of the ring's keys, sorted.
func (r Ring) KeyIDs() []string {
	ids := make([]string, 0, len(r.Keys))
	for _, k := range r.Keys {
		ids = append(ids, k.ID)
	}
	sort.Strings(ids)
	return ids
}

// String describes the ring by its key ids.
func (r Ring) String() string {
	s, _ := r.Signing()
	return fmt.Sprintf("key ring %s (signing %s, keys %v)", r.Algorithm, s.ID, r.KeyIDs())
}

// Format implements fmt.Formatter: every verb prints String.
func (r Ring) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// LogValue implements slog.LogValuer without the keys' material.
func (r Ring) LogValue() slog.Value { return slog.StringValue(r.String()) }

// MarshalJSON implements json.Marshaler without the keys' material (use
// Encode for the document).
func (r Ring) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Algorithm string    `json:"alg"`
		Keys      []RingKey `json:"keys"`
	}{r.Algorithm, r.Keys})
}

// KeyRing is a key ring an application reads, kept fresh like a Secret
// (it is one, parsed): it signs JWTs with the ring's signing key and
// verifies them by their kid against every key of the ring. The ring in
// use is the last one that parsed: a document that does not parse is
// logged and skipped, so a broken write never takes the keys away.
//
// It is an http.Handler like Secret, answering with the ring in use:
// version, fingerprint (what the rotator's http check compares) and the
// key ids, never a key.
type KeyRing struct {
	secret *Secret
	log    *slog.Logger
	now    func() time.Time

	mu   sync.RWMutex
	ring Ring
	ver  Version
}

// OpenKeyRing opens the secret named by opts (see Open) and reads it as a
// key ring. Options.OnChange, when set, is called after the new ring is
// in use.
func OpenKeyRing(ctx context.Context, opts Options) (*KeyRing, error) {
	k := &KeyRing{log: opts.Logger, now: opts.Now}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if k.now == nil {
		k.now = time.Now
	}
	user := opts.OnChange
	opts.OnChange = func(old, new Version) {
		if err := k.load(new); err != nil {
			k.log.Warn("key ring changed but cannot be used; keeping the ring in use", "secret", opts.Name, "version", new, "err", err)
			return
		}
		if user != nil {
			user(old, new)
		}
	}
	opts.Required = true
	s, err := Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	k.secret = s
	if err := k.load(s.Current()); err != nil {
		return nil, fmt.Errorf("appsecret %s: %w", opts.Name, err)
	}
	return k, nil
}

// load parses v and makes it the ring in use.
func (k *KeyRing) load(v Version) error {
	r, err := ParseRing(v.Reveal())
	if err != nil {
		return fmt.Errorf("%s: %w", v, err)
	}
	k.mu.Lock()
	k.ring, k.ver = r, v
	k.mu.Unlock()
	return nil
}

// Ring returns the ring in use and the version it came from.
func (k *KeyRing) Ring() (Ring, Version) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ring, k.ver
}

// Refresh reads the ring again now (see Secret.Refresh); it reports
// whether the ring in use changed.
func (k *KeyRing) Refresh(ctx context.Context) (bool, error) {
	_, before := k.Ring()
	if _, err := k.secret.Refresh(ctx); err != nil {
		return false, err
	}
	if cur := k.secret.Current(); cur.Fingerprint != before.Fingerprint {
		// Refresh calls OnChange (load) itself; a ring that did not parse
		// leaves the one in use, and says so here too.
		if _, now := k.Ring(); now.Fingerprint != cur.Fingerprint {
			if err := k.load(cur); err != nil {
				return false, err
			}
		}
	}
	_, after := k.Ring()
	return after.Fingerprint != before.Fingerprint, nil
}

// Start re-reads the ring every Options.Refresh (see Secret.Start).
func (k *KeyRing) Start(ctx context.Context) { k.secret.Start(ctx) }

// Close stops what Start started.
func (k *KeyRing) Close() { k.secret.Close() }

// SignJWT signs claims with the ring's signing key (its id in the kid
// header). When the ring bounds token lifetimes (max_token_lifetime), the
// claims must expire within it: a token that outlived the bound could
// outlive its key, which the rotator drops from the ring once every token
// it signed has expired.
func (k *KeyRing) SignJWT(claims jwt.Claims) (string, error) {
	r, _ := k.Ring()
	key, ok := r.Signing()
	if !ok {
		return "", fmt.Errorf("%w: no signing key", ErrBadRing)
	}
	if r.MaxTokenLifetime > 0 {
		exp, err := claims.GetExpirationTime()
		if err != nil {
			return "", err
		}
		if exp == nil {
			return "", fmt.Errorf("the ring's tokens must expire (exp) within its max_token_lifetime %s", r.MaxTokenLifetime)
		}
		if exp.After(k.now().Add(r.MaxTokenLifetime)) {
			return "", fmt.Errorf("the token expires at %s, after the ring's max_token_lifetime %s", exp.UTC().Format(time.RFC3339), r.MaxTokenLifetime)
		}
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(r.Algorithm), claims)
	t.Header["kid"] = key.ID
	return t.SignedString(key.material)
}

// Keyfunc finds the key of a token by its kid among every key of the
// ring in use; a token without a kid, or with one the ring does not hold,
// is refused (ErrUnknownKey), as is one of another algorithm.
func (k *KeyRing) Keyfunc(t *jwt.Token) (any, error) {
	r, _ := k.Ring()
	if t.Method == nil || t.Method.Alg() != r.Algorithm {
		return nil, fmt.Errorf("%w: the token is not %s", jwt.ErrTokenSignatureInvalid, r.Algorithm)
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, fmt.Errorf("%w: the token has no kid", ErrUnknownKey)
	}
	key, ok := r.Key(kid)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not in the ring (%d keys)", ErrUnknownKey, quoteKID(kid), len(r.Keys))
	}
	return key.material, nil
}

// quoteKID cuts a kid from a token (anyone's input) for an error.
func quoteKID(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

// ParseJWT verifies token against the ring by its kid and decodes its
// claims into claims: the algorithm must be the ring's and the token must
// carry an expiry (more options, such as jwt.WithAudience, add checks).
// An unknown kid is an error wrapping ErrUnknownKey.
func (k *KeyRing) ParseJWT(token string, claims jwt.Claims, opts ...jwt.ParserOption) (*jwt.Token, error) {
	r, _ := k.Ring()
	opts = append([]jwt.ParserOption{jwt.WithValidMethods([]string{r.Algorithm}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(k.now)}, opts...)
	return jwt.ParseWithClaims(token, claims, k.Keyfunc, opts...)
}

// RingStatus is what KeyRing's handler answers: Status, and the ring's
// key ids.
type RingStatus struct {
	Status
	SigningKey string   `json:"signing_key"`
	NextKey    string   `json:"next_key,omitempty"`
	Keys       []string `json:"keys"`
}

// Status returns what the handler answers: the ring in use.
func (k *KeyRing) Status() RingStatus {
	r, v := k.Ring()
	st := RingStatus{Status: Status{Name: k.secret.opts.Name, Version: v.Number, Fingerprint: v.Fingerprint, Source: v.Source}, Keys: r.KeyIDs()}
	if !v.RotatedAt.IsZero() {
		t := v.RotatedAt.UTC()
		st.RotatedAt = &t
	}
	if s, ok := r.Signing(); ok {
		st.SigningKey = s.ID
	}
	if n, ok := r.Next(); ok {
		st.NextKey = n.ID
	}
	return st
}

// ServeHTTP answers GET and HEAD with the ring in use, as the rotator's
// http check asks (see Secret.ServeHTTP), and its key ids:
//
//	{"name": "auth/jwt", "version": 7, "fingerprint": "3f9a1c0b7e22",
//	 "signing_key": "k3f...", "next_key": "k9a...", "keys": [...], ...}
func (k *KeyRing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := k.Status()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Secret-Version", strconv.FormatInt(st.Version, 10))
	h.Set("X-Secret-Fingerprint", st.Fingerprint)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(st)
}

var _ http.Handler = (*KeyRing)(nil)

// String names the ring in use by its version and key ids, never a key: a
// KeyRing formatted with any verb (or logged) shows no key material.
func (k *KeyRing) String() string {
	if k == nil {
		return "appsecret.KeyRing(nil)"
	}
	r, v := k.Ring()
	return fmt.Sprintf("appsecret.KeyRing(%s, %v)", v, r)
}

// Format writes String for every verb (%v, %+v, %#v, %s ...).
func (k *KeyRing) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue is String, for slog.
func (k *KeyRing) LogValue() slog.Value { return slog.StringValue(k.String()) }

// PublishOverhead bounds what a store writes beside the ring document in
// one secret value: the version's metadata fields (version, run id,
// rotated_at, fingerprint, key_id, field; rotation.Version.Data), their
// names and the JSON object around them.
const PublishOverhead = 1024

// PublishedSize is the most bytes a store writes for a ring document doc
// in one secret value: doc as a JSON string (its quotes escaped), as AWS
// Secrets Manager's secret string and Vault's data field carry it, plus
// PublishOverhead.
func PublishedSize(doc string) int {
	b, _ := json.Marshal(doc)
	return len(b) + PublishOverhead
}

// MaxPublishedSize is PublishedSize of the largest document a ring of
// alg with keys keys (at least 2: signing and next), each keySize bytes,
// and max_token_lifetime lifetime can encode to: every timestamp as long
// as RFC 3339 with nanoseconds makes it and every key but two accepted
// with an end. It grows linearly with keys and is computed from rings of
// two and three keys, so a large keys allocates nothing more.
func MaxPublishedSize(alg string, lifetime time.Duration, keySize, keys int) int {
	if keys < 2 {
		keys = 2
	}
	size := func(n int) int {
		at := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
		material := make([]byte, keySize)
		r := Ring{Algorithm: alg, MaxTokenLifetime: lifetime}
		for i := range n {
			state := KeyAccepted
			switch i {
			case n - 2:
				state = KeySigning
			case n - 1:
				state = KeyNext
			}
			k := NewRingKey(fmt.Sprintf("k%016x", i), state, at, material)
			if state == KeyAccepted {
				k.AcceptUntil = at
			}
			r.Keys = append(r.Keys, k)
		}
		doc, err := r.Encode()
		if err != nil {
			return 0
		}
		return PublishedSize(doc)
	}
	two, three := size(2), size(3)
	return two + (keys-2)*(three-two)
}
