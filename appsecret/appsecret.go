package appsecret

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// ErrNotFound is returned by Open and Refresh when a required secret is in
// none of the places looked at.
var ErrNotFound = errors.New("secret not found")

// Sources a Version came from.
const (
	SourceVault   = "vault"
	SourceEnv     = "env"
	SourceFile    = "file"
	SourceDefault = "default"
)

// DefaultSecretsDir is where secret files are looked for (Docker and
// Kubernetes mount secrets there).
const DefaultSecretsDir = "/run/secrets"

// Version is one version of a secret as the application sees it. Printing
// it (fmt, slog, JSON) never shows the secret; Reveal does.
type Version struct {
	value string
	// Number is the rotator's version number (0 when the source does not
	// say: an environment variable, a default, a file put there by hand).
	Number int64
	// Fingerprint names the value without revealing it: safe to log and
	// to report. For a version the rotator published (a document with its
	// version, run_id and fingerprint), it is the fingerprint the rotator
	// recorded, after checking that it belongs to the value; for any other
	// value (env, a default, a file put there by hand) it is a keyed
	// fingerprint, "k-" and 16 hex digits of an HMAC-SHA-256 with
	// Options.FingerprintKey, which tells nothing about the value to whom
	// does not hold the key.
	Fingerprint string
	RotatedAt   time.Time
	RunID       string
	// Username is the login name where the secret has one (Postgres).
	Username string
	// Fields are the non-secret fields published beside the secret (host,
	// port, database, key_id...).
	Fields map[string]string
	// Source says where the version was read: vault, env, file, default.
	Source string
}

// Reveal returns the secret.
func (v Version) Reveal() string { return v.value }

// IsZero reports whether v holds no secret.
func (v Version) IsZero() bool { return v.value == "" }

// String describes v without its secret.
func (v Version) String() string {
	if v.value == "" {
		return "(none)"
	}
	return fmt.Sprintf("version %d (fingerprint %s, from %s)", v.Number, v.Fingerprint, v.Source)
}

// Format implements fmt.Formatter: every verb prints String.
func (v Version) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(v.String())) }

// LogValue implements slog.LogValuer.
func (v Version) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("version", v.Number), slog.String("fingerprint", v.Fingerprint), slog.String("source", v.Source))
}

// MarshalJSON implements json.Marshaler without the secret.
func (v Version) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Version     int64  `json:"version"`
		Fingerprint string `json:"fingerprint"`
		Source      string `json:"source"`
	}{v.Number, v.Fingerprint, v.Source})
}

// Fingerprint is the rotator's fingerprint of a secret: the first 12 hex
// digits of its SHA-256. It is only safe to show for a secret the rotator
// generated (too long to guess); Version.Fingerprint uses it only for
// those.
func Fingerprint(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// Options say where a secret is and what to do when it changes.
type Options struct {
	// Name names the secret in messages and the handler's answer (the
	// rotator's secret id, such as api/openrouter). Required.
	Name string
	// VaultPath is the KV v2 path under VaultMount (default Name);
	// VaultMount defaults to "secret". Vault is asked only when VAULT_ADDR
	// is set (or Vault is given).
	VaultPath  string
	VaultMount string
	// Vault is a client to use instead of one built from VAULT_ADDR and
	// VAULT_TOKEN.
	Vault *vaultapi.Client
	// Env names the environment variable holding the secret (default:
	// Name in upper case with every other character as _, such as
	// API_OPENROUTER). <Env>_PREVIOUS may hold the previous version.
	Env string
	// File is the secret's file (default /run/secrets/<Name>): the
	// rotator's JSON document, or the secret alone with a .meta.json
	// beside it. <File>.previous holds the previous version.
	File string
	// Field is the document field holding the secret (default: the
	// document's secret_field, else password). It may be a derived field
	// (url) or a field of a shared document (db_password of
	// ai-tg-bot/prod): the version is the one of the secret that owns it,
	// with that secret's fingerprint, number and non-secret fields.
	Field string
	// Default is used when no source has the secret.
	Default string
	// Required makes Open and Refresh fail with ErrNotFound when no source
	// has the secret and there is no Default.
	Required bool
	// Refresh is how often Start re-reads the secret (default 30s).
	Refresh time.Duration
	// OnChange is called (from Refresh's goroutine, never under a lock)
	// when the current version changes: rebuild a connection pool here.
	OnChange func(old, new Version)
	// PreviousFor bounds how long Validate accepts the previous version
	// after the current one was rotated (0: as long as it is published).
	// Set it to the policy's grace plus monitor to stop accepting a
	// retired token before the next rotation replaces it.
	PreviousFor time.Duration
	Logger      *slog.Logger
	// FingerprintKey keys the fingerprint of values the rotator did not
	// publish (see Version.Fingerprint). Give every replica of a
	// deployment the same key to have them report the same fingerprint
	// for such a value; default: a random key per Open.
	FingerprintKey []byte
	// Getenv and Now replace os.Getenv and time.Now (tests).
	Getenv func(string) string
	Now    func() time.Time
}

// Secret is a secret an application uses, kept fresh in the background.
// It is safe for concurrent use.
type Secret struct {
	opts  Options
	vault *vaultapi.Client

	mu      sync.RWMutex
	current Version
	prev    Version

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Open reads the secret once, in the fallback order Vault (when VAULT_ADDR
// is set) -> environment variable -> file -> Default, and returns it ready
// to use. A Vault that answers with an error other than "not found" is an
// error, not a reason to fall back: a stale environment variable must not
// quietly win over an unreachable Vault.
func Open(ctx context.Context, opts Options) (*Secret, error) {
	if opts.Name == "" {
		return nil, errors.New("appsecret: Name is required")
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 30 * time.Second
	}
	if opts.VaultPath == "" {
		opts.VaultPath = opts.Name
	}
	if opts.VaultMount == "" {
		opts.VaultMount = "secret"
	}
	if opts.Env == "" {
		opts.Env = EnvName(opts.Name)
	}
	if opts.File == "" {
		opts.File = filepath.Join(DefaultSecretsDir, filepath.FromSlash(opts.Name))
	}
	if len(opts.FingerprintKey) == 0 {
		opts.FingerprintKey = make([]byte, 32)
		if _, err := rand.Read(opts.FingerprintKey); err != nil {
			return nil, fmt.Errorf("appsecret %s: fingerprint key: %w", opts.Name, err)
		}
	}
	s := &Secret{opts: opts, vault: opts.Vault}
	if s.vault == nil && opts.Getenv("VAULT_ADDR") != "" {
		cfg := vaultapi.DefaultConfig()
		cfg.Address = opts.Getenv("VAULT_ADDR")
		c, err := vaultapi.NewClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("appsecret %s: vault client: %w", opts.Name, err)
		}
		if tok := opts.Getenv("VAULT_TOKEN"); tok != "" {
			c.SetToken(tok)
		}
		s.vault = c
	}
	if _, err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// EnvName is the default environment variable of a secret name: upper
// case, every character but letters and digits as _ (api/openrouter ->
// API_OPENROUTER).
func EnvName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// Current returns the version in use.
func (s *Secret) Current() Version {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

// Previous returns the previous version, when its source keeps one.
func (s *Secret) Previous() (Version, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.prev, !s.prev.IsZero()
}

// Refresh reads the secret again and reports whether the current version
// changed; OnChange is called when it did. On an error the versions in use
// are kept.
func (s *Secret) Refresh(ctx context.Context) (bool, error) {
	cur, prev, err := s.read(ctx)
	if err != nil {
		return false, fmt.Errorf("appsecret %s: %w", s.opts.Name, err)
	}
	s.mu.Lock()
	old := s.current
	if cur.IsZero() && !old.IsZero() {
		// Gone from every source (a file being rewritten in place, a
		// variable unset): keep what works rather than blank it.
		s.mu.Unlock()
		return false, fmt.Errorf("appsecret %s: %w any more; keeping %s", s.opts.Name, ErrNotFound, old)
	}
	s.current, s.prev = cur, prev
	s.mu.Unlock()
	changed := old.Fingerprint != cur.Fingerprint
	if changed && !old.IsZero() {
		s.opts.Logger.InfoContext(ctx, "secret changed", "secret", s.opts.Name, "from", old, "to", cur)
		if s.opts.OnChange != nil {
			s.opts.OnChange(old, cur)
		}
	}
	return changed && !old.IsZero(), nil
}

// Start re-reads the secret every Options.Refresh until Close or ctx ends.
// Errors are logged; the versions in use are kept.
func (s *Secret) Start(ctx context.Context) {
	s.once.Do(func() {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(s.done)
			t := time.NewTicker(s.opts.Refresh)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-s.stop:
					return
				case <-t.C:
					if _, err := s.Refresh(ctx); err != nil {
						s.opts.Logger.WarnContext(ctx, "secret refresh failed; keeping the version in use", "secret", s.opts.Name, "err", err)
					}
				}
			}
		}()
	})
}

// Close stops the background refresh started by Start.
func (s *Secret) Close() {
	if s.stop == nil {
		return
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Validate reports whether token is the current version, or the previous
// one while it is accepted (see Options.PreviousFor), comparing in constant
// time: both are always compared, on SHA-256 digests so that lengths do not
// leak either.
func (s *Secret) Validate(token string) bool {
	if token == "" {
		return false
	}
	s.mu.RLock()
	cur, prev := s.current, s.prev
	s.mu.RUnlock()
	got := sha256.Sum256([]byte(token))
	match := func(v Version) int {
		if v.IsZero() {
			// Still do the work, so timing does not say there is none.
			_ = subtle.ConstantTimeCompare(got[:], got[:])
			return 0
		}
		want := sha256.Sum256([]byte(v.value))
		return subtle.ConstantTimeCompare(got[:], want[:])
	}
	okCur, okPrev := match(cur), match(prev)
	if okPrev == 1 && s.opts.PreviousFor > 0 && !cur.RotatedAt.IsZero() &&
		!s.opts.Now().Before(cur.RotatedAt.Add(s.opts.PreviousFor)) {
		okPrev = 0
	}
	return okCur|okPrev == 1
}

// read looks in the sources in order.
func (s *Secret) read(ctx context.Context) (cur, prev Version, err error) {
	if s.vault != nil {
		cur, prev, err = s.readVault(ctx)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return cur, prev, err
		}
	}
	if v := s.opts.Getenv(s.opts.Env); v != "" {
		cur = s.raw(v, SourceEnv)
		if p := s.opts.Getenv(s.opts.Env + "_PREVIOUS"); p != "" {
			prev = s.raw(p, SourceEnv)
		}
		return cur, prev, nil
	}
	cur, err = s.readFile(s.opts.File)
	switch {
	case err == nil:
		prev, _ = s.readFile(s.opts.File + ".previous")
		return cur, prev, nil
	case !errors.Is(err, ErrNotFound):
		return cur, prev, err
	}
	if s.opts.Default != "" {
		return s.raw(s.opts.Default, SourceDefault), Version{}, nil
	}
	if s.opts.Required {
		where := []string{"environment variable " + s.opts.Env, "file " + s.opts.File}
		if s.vault != nil {
			where = append([]string{"vault " + s.opts.VaultMount + "/" + s.opts.VaultPath}, where...)
		}
		return Version{}, Version{}, fmt.Errorf("%w in %s, and no default", ErrNotFound, strings.Join(where, ", "))
	}
	return Version{}, Version{}, nil
}

func (s *Secret) raw(v, source string) Version {
	return Version{value: v, Fingerprint: s.keyed(v), Source: source}
}

// keyed is the fingerprint of a value the rotator did not publish.
func (s *Secret) keyed(v string) string {
	m := hmac.New(sha256.New, s.opts.FingerprintKey)
	m.Write([]byte(v))
	return "k-" + hex.EncodeToString(m.Sum(nil)[:8])
}

// readVault reads the latest KV v2 version and the newest readable one
// before it.
func (s *Secret) readVault(ctx context.Context) (cur, prev Version, err error) {
	kv := s.vault.KVv2(s.opts.VaultMount)
	sec, err := kv.Get(ctx, s.opts.VaultPath)
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		return cur, prev, ErrNotFound
	}
	if err != nil {
		return cur, prev, fmt.Errorf("vault %s/%s: %w", s.opts.VaultMount, s.opts.VaultPath, err)
	}
	cur, err = s.document(toStrings(sec.Data), SourceVault)
	if err != nil {
		return cur, prev, fmt.Errorf("vault %s/%s: %w", s.opts.VaultMount, s.opts.VaultPath, err)
	}
	if sec.VersionMetadata == nil {
		return cur, prev, nil
	}
	versions, err := kv.GetVersionsAsList(ctx, s.opts.VaultPath)
	if err != nil {
		return cur, prev, nil // the previous version is a bonus
	}
	best := 0
	for _, m := range versions {
		if m.Version < sec.VersionMetadata.Version && m.Version > best && !m.Destroyed && m.DeletionTime.IsZero() {
			best = m.Version
		}
	}
	if best > 0 {
		if p, err := kv.GetVersion(ctx, s.opts.VaultPath, best); err == nil {
			prev, _ = s.document(toStrings(p.Data), SourceVault)
		}
	}
	return cur, prev, nil
}

func toStrings(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case string:
			out[k] = x
		case nil:
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

// readFile reads the rotator's JSON document, or a raw secret (with its
// .meta.json when there is one).
func (s *Secret) readFile(name string) (Version, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return Version{}, ErrNotFound
	}
	if err != nil {
		return Version{}, err // *PathError: names the file, not its content
	}
	if doc, ok := jsonObject(b); ok {
		v, err := s.document(doc, SourceFile)
		if err != nil {
			return Version{}, fmt.Errorf("file %s: %w", name, err)
		}
		return v, nil
	}
	value := strings.TrimRight(string(b), "\r\n")
	if value == "" {
		return Version{}, ErrNotFound
	}
	if mb, err := os.ReadFile(name + ".meta.json"); err == nil {
		if meta, ok := jsonObject(mb); ok {
			field := s.field(meta)
			meta[field] = value
			meta["secret_field"] = field
			return s.document(meta, SourceFile)
		}
	}
	return s.raw(value, SourceFile), nil
}

// jsonObject decodes a JSON object of strings (numbers and booleans kept
// as written).
func jsonObject(b []byte) (map[string]string, bool) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false
	}
	return toStrings(m), true
}

func (s *Secret) field(doc map[string]string) string {
	switch {
	case s.opts.Field != "":
		return s.opts.Field
	case doc["secret_field"] != "":
		return doc["secret_field"]
	}
	return "password"
}

// sharedGroup is the part of a rotator.<secret id> field of a shared
// document appsecret reads (see rotation.SharedFields).
type sharedGroup struct {
	Current map[string]string `json:"current"`
	Fields  map[string]string `json:"fields"`
}

// shared finds the rotator.<secret id> field that owns field of a shared
// document, and returns the version's data as rotator wrote it (the
// owned fields under their credential names).
func shared(doc map[string]string, field string) (map[string]string, string, bool) {
	for k, raw := range doc {
		if !strings.HasPrefix(k, "rotator.") {
			continue
		}
		var g sharedGroup
		if json.Unmarshal([]byte(raw), &g) != nil || g.Current == nil {
			continue
		}
		for name, docField := range g.Fields {
			if docField != field {
				continue
			}
			d := make(map[string]string, len(g.Current)+len(g.Fields))
			for x, v := range g.Current {
				d[x] = v
			}
			for n, f := range g.Fields {
				if v, ok := doc[f]; ok {
					d[n] = v
				}
			}
			return d, name, true
		}
	}
	return nil, "", false
}

// document turns the rotator's flat document into a Version. A field of
// a shared document (one of the fields a rotator.<secret id> field says
// its secret owns) is read as that secret's version: its number, run id
// and fingerprint, and its own non-secret fields, not the document's
// other fields (other secrets).
func (s *Secret) document(doc map[string]string, source string) (Version, error) {
	if s.opts.Field != "" {
		if d, name, ok := shared(doc, s.opts.Field); ok {
			v, err := s.documentAs(d, name, source)
			if err == nil {
				v.value = doc[s.opts.Field]
			}
			return v, err
		}
	}
	return s.documentAs(others(doc, s.opts.Field), s.field(doc), source)
}

// others returns doc without the fields rotator owns in it (its
// rotator.<secret id> fields and the fields they name) other than keep:
// reading a field of a shared document no rotator owns, the owned fields
// are other secrets, not fields of this one.
func others(doc map[string]string, keep string) map[string]string {
	var owned []string
	for k, raw := range doc {
		if !strings.HasPrefix(k, "rotator.") {
			continue
		}
		owned = append(owned, k)
		var g sharedGroup
		if json.Unmarshal([]byte(raw), &g) == nil {
			for _, f := range g.Fields {
				owned = append(owned, f)
			}
		}
	}
	if len(owned) == 0 {
		return doc
	}
	out := make(map[string]string, len(doc))
	for k, v := range doc {
		out[k] = v
	}
	for _, k := range owned {
		if k != keep {
			delete(out, k)
		}
	}
	return out
}

// documentAs reads field of a rotator document as the secret.
func (s *Secret) documentAs(doc map[string]string, field, source string) (Version, error) {
	value, ok := doc[field]
	if !ok || value == "" {
		return Version{}, fmt.Errorf("the document has no %q field (set Options.Field)", field)
	}
	v := s.raw(value, source)
	// The rotator's own fingerprint, for a version it published: it was
	// computed from a generated value, and the http check compares it. A
	// derived field holding the secret (a DSN, listed under secret_fields)
	// is named by the fingerprint of its version's secret, after checking
	// that this fingerprint belongs to the secret published beside it.
	secretField := doc["secret_field"]
	if secretField == "" {
		secretField = "password"
	}
	secretFields := map[string]bool{}
	if sf := doc["secret_fields"]; sf != "" {
		for _, k := range strings.Split(sf, ",") {
			secretFields[k] = true
		}
	}
	own := value
	if secretFields[field] {
		own = doc[secretField]
	}
	if fp := doc["fingerprint"]; fp != "" && doc["run_id"] != "" && doc["version"] != "" && fp == Fingerprint(own) &&
		(field == secretField || secretFields[field]) {
		v.Fingerprint = fp
	}
	v.Number, _ = strconv.ParseInt(doc["version"], 10, 64)
	v.RotatedAt, _ = time.Parse(time.RFC3339Nano, doc["rotated_at"])
	v.RunID, v.Username = doc["run_id"], doc["username"]
	// Fields are the non-secret ones: neither the secret nor a derived
	// field holding it.
	v.Fields = map[string]string{}
	for k, x := range doc {
		switch {
		case k == field || k == secretField || secretFields[k]:
		case k == "secret_field" || k == "secret_fields" || k == "version" || k == "rotated_at" || k == "run_id" || k == "fingerprint":
		default:
			v.Fields[k] = x
		}
	}
	return v, nil
}

// String names the secret and the version in use, never its value: a
// Secret formatted with any verb (or logged) shows no secret, although its
// fields hold them (fmt does not call the redacting methods of unexported
// fields).
func (s *Secret) String() string {
	if s == nil {
		return "appsecret.Secret(nil)"
	}
	return "appsecret.Secret(" + s.opts.Name + ", " + s.Current().String() + ")"
}

// Format writes String for every verb (%v, %+v, %#v, %s ...).
func (s *Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue is String, for slog.
func (s *Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
