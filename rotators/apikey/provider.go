package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/internal/jsonpath"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// runIDRE matches the run ids the engine makes (UUIDs), so that the name
// of a key tells exactly which secret and run created it.
var runIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Config builds a Provider.
type Config struct {
	// Spec is the rotator's configuration, as the policy loader left it
	// (preset applied, defaults filled).
	Spec *policy.HTTPAPISpec
	// Management returns the management credential. It is called before
	// each use, so a rotated management credential is picked up.
	Management func(ctx context.Context) (secret.Value, error)
	// Client makes the calls (default: a client with no timeout of its
	// own; each call is bounded by spec.timeout). Whatever its own
	// redirect policy, it follows no redirect that leaves the origin
	// (internal/httpclient): the calls carry the management key.
	Client *http.Client
	Logger *slog.Logger
	// Sleep waits between tries of verify (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// VerifyTries is how often a new key is tried before it counts as
	// broken (default 3), for providers that take a moment to accept a
	// new key.
	VerifyTries int
}

// Provider rotates API keys at a provider with an HTTP API: create and
// verify a new key, revoke the old one. It is a rotation.Rotator and a
// rotation.LastUsedReporter.
type Provider struct {
	spec       *policy.HTTPAPISpec
	management func(ctx context.Context) (secret.Value, error)
	client     *http.Client
	log        *slog.Logger
	sleep      func(ctx context.Context, d time.Duration) error
	tries      int
	timeout    time.Duration

	mu    sync.Mutex
	usage map[string]usageSeen // key id -> last usage counter seen
}

// usageSeen is a usage counter and when it was first seen at that value.
type usageSeen struct {
	value string
	since time.Time
}

var (
	_ rotation.Rotator          = (*Provider)(nil)
	_ rotation.LastUsedReporter = (*Provider)(nil)
)

// Validate checks an http_api configuration as the loader leaves it: the
// calls the rotator needs are there and say where to find what it reads.
func Validate(spec *policy.HTTPAPISpec) error {
	if spec == nil {
		return errors.New("http_api: no configuration")
	}
	var missing []string
	if spec.Create == nil {
		missing = append(missing, "create")
	}
	if spec.Verify == nil {
		missing = append(missing, "verify")
	}
	if spec.Revoke == nil {
		missing = append(missing, "revoke")
	}
	if len(missing) > 0 {
		return fmt.Errorf("http_api: the %s call(s) are required (or a preset that has them)", strings.Join(missing, ", "))
	}
	if spec.Create.KeyPath == "" || spec.Create.IDPath == "" {
		return errors.New("http_api: create needs key_path and id_path: where the new key and its id are in the answer")
	}
	for _, c := range []*policy.HTTPCallSpec{spec.Create, spec.Verify, spec.Revoke, spec.Restore, spec.List, spec.LastUsed} {
		if c != nil && strings.HasPrefix(c.URL, "/") && spec.BaseURL == "" {
			return fmt.Errorf("http_api: the call to %s needs base_url", c.URL)
		}
	}
	return nil
}

// New builds a Provider.
func New(cfg Config) (*Provider, error) {
	if err := Validate(cfg.Spec); err != nil {
		return nil, err
	}
	if cfg.Management == nil {
		return nil, errors.New("http_api: no management credential")
	}
	p := &Provider{spec: cfg.Spec, management: cfg.Management, client: httpclient.Safe(cfg.Client), log: cfg.Logger,
		sleep: cfg.Sleep, tries: cfg.VerifyTries, timeout: 30 * time.Second, usage: map[string]usageSeen{}}
	if cfg.Spec.Timeout != nil && *cfg.Spec.Timeout > 0 {
		p.timeout = cfg.Spec.Timeout.D()
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	if p.tries < 1 {
		p.tries = 3
	}
	return p, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (p *Provider) field() string {
	if p.spec.Field == "" {
		return policy.DefaultAPIKeyField
	}
	return p.spec.Field
}

// KeyName is the name a key created for a run of a secret gets:
// <name_prefix><secret id>-<run id>.
func (p *Provider) KeyName(secretID, runID string) string {
	return p.spec.NamePrefix + secretID + "-" + runID
}

// ownKey reports whether a key name is one this rotator gave a key of
// secretID (for any run).
func (p *Provider) ownKey(secretID, name string) bool {
	rest, ok := strings.CutPrefix(name, p.spec.NamePrefix+secretID+"-")
	return ok && runIDRE.MatchString(rest)
}

func (p *Provider) vars(ctx context.Context, v vars) (vars, error) {
	m, err := p.management(ctx)
	if err != nil {
		return v, fmt.Errorf("management credential: %w", err)
	}
	v.management = m
	return v, nil
}

// Generate revokes the keys earlier runs created and never recorded (when
// a list call is configured), creates a key named for the run, and calls
// verify with it. A key that does not verify is revoked before the error
// is returned.
func (p *Provider) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	v, err := p.vars(ctx, vars{secretID: req.SecretID, runID: req.RunID, name: p.KeyName(req.SecretID, req.RunID)})
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	if p.spec.List != nil {
		if _, err := p.sweep(ctx, v, req.Current.KeyID); err != nil {
			return rotation.GenerateResponse{}, err
		}
	}
	a, err := p.do(ctx, "create", p.spec.Create, v)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	key, okKey := field(a, p.spec.Create.KeyPath)
	id, okID := field(a, p.spec.Create.IDPath)
	switch {
	case !okID && okKey:
		// A key we cannot name cannot be revoked by id; the next run's
		// sweep finds it by name. The answer is never quoted: it holds
		// the key.
		return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
			"create call: the answer has no key id at %q (HTTP %d); key %s is left for the next run to revoke (check id_path)",
			p.spec.Create.IDPath, a.status, v.name))
	case !okKey:
		return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
			"create call: the answer has no key at %q (HTTP %d); check key_path", p.spec.Create.KeyPath, a.status))
	}
	cred := rotation.Credential{Secret: secret.New(key), Field: p.field(), KeyID: id,
		Extra: map[string]string{"key_name": v.name}}
	p.log.InfoContext(ctx, "api key created", "secret", req.SecretID, "run_id", req.RunID, "key_id", id, "key_name", v.name,
		"fingerprint", cred.Secret.Fingerprint())
	if err := p.verify(ctx, req.SecretID, cred.Secret, true); err != nil {
		if rerr := p.revoke(ctx, v, id); rerr != nil {
			return rotation.GenerateResponse{}, fmt.Errorf("new key %s does not work: %w (and revoking it failed: %v; the next run revokes it)", id, err, rerr)
		}
		return rotation.GenerateResponse{}, fmt.Errorf("new key %s does not work (revoked it): %w", id, err)
	}
	return rotation.GenerateResponse{Credential: cred}, nil
}

// sweep revokes every key named for secretID that is not keep and returns
// their ids.
func (p *Provider) sweep(ctx context.Context, v vars, keep string) ([]string, error) {
	a, err := p.do(ctx, "list", p.spec.List, v)
	if err != nil {
		return nil, err
	}
	doc, err := jsonpath.Decode(a.body)
	if err != nil {
		return nil, fmt.Errorf("list call: the answer is not JSON: %w", err)
	}
	raw, ok := jsonpath.Get(doc, p.spec.List.ItemsPath)
	items, isList := raw.([]any)
	if !ok || !isList {
		return nil, rotation.Permanent(fmt.Errorf("list call: no list at %q in the answer (check items_path)", p.spec.List.ItemsPath))
	}
	var revoked []string
	for _, it := range items {
		name, err1 := jsonpath.String(it, p.spec.List.NamePath)
		id, err2 := jsonpath.String(it, p.spec.List.IDPath)
		if err1 != nil || err2 != nil || id == keep || !p.ownKey(v.secretID, name) {
			continue
		}
		if err := p.revoke(ctx, v, id); err != nil {
			return revoked, fmt.Errorf("revoke stray key %s (%s): %w", id, name, err)
		}
		p.log.WarnContext(ctx, "revoked a stray api key a crashed run created", "secret", v.secretID, "key_id", id, "key_name", name)
		revoked = append(revoked, id)
	}
	return revoked, nil
}

// revoke calls revoke for id; a key that is gone already is not an error.
func (p *Provider) revoke(ctx context.Context, v vars, id string) error {
	v.keyID = id
	_, err := p.do(ctx, "revoke", p.spec.Revoke, v)
	if errors.Is(err, errGone) {
		return nil
	}
	return err
}

// verify calls verify with key, tries times when fresh (a provider may take
// a moment to accept a key it just made).
func (p *Provider) verify(ctx context.Context, secretID string, key secret.Value, fresh bool) error {
	if key.IsZero() {
		return rotation.Permanent(errors.New("verify: no key to verify"))
	}
	tries := 1
	if fresh {
		tries = p.tries
	}
	var err error
	for i := 0; i < tries; i++ {
		if i > 0 {
			if serr := p.sleep(ctx, time.Duration(i)*500*time.Millisecond); serr != nil {
				return serr
			}
		}
		var v vars
		v, err = p.vars(ctx, vars{secretID: secretID, key: key})
		if err != nil {
			return err
		}
		_, err = p.do(ctx, "verify", p.spec.Verify, v)
		if err == nil {
			return nil
		}
		if errors.Is(err, errGone) {
			err = fmt.Errorf("verify: the provider does not know the key: %w", err)
		}
	}
	return err
}

// Test calls verify with the credential.
func (p *Provider) Test(ctx context.Context, req rotation.TestRequest) error {
	return p.verify(ctx, req.SecretID, req.Credential.Secret, false)
}

// Clients returns ErrUnsupported: a provider does not say who holds a key.
// The last_used check (LastUsed) and client http checks do that job.
func (p *Provider) Clients(context.Context, rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	return rotation.ClientsResponse{}, rotation.ErrUnsupported
}

// Retire revokes the old key by id. A key that is gone already, or an old
// credential with no key id (a key made by hand before the first
// rotation), is not an error.
func (p *Provider) Retire(ctx context.Context, req rotation.RetireRequest) error {
	if req.Old.KeyID == "" {
		p.log.WarnContext(ctx, "the old api key has no id on record; revoke it by hand", "secret", req.SecretID, "old", req.Old.String())
		return nil
	}
	if req.Old.KeyID == req.New.KeyID {
		return rotation.Permanent(fmt.Errorf("retire: the old key %s is the new one; refusing to revoke it", req.Old.KeyID))
	}
	v, err := p.vars(ctx, vars{secretID: req.SecretID})
	if err != nil {
		return err
	}
	if err := p.revoke(ctx, v, req.Old.KeyID); err != nil {
		return err
	}
	p.log.InfoContext(ctx, "api key revoked", "secret", req.SecretID, "key_id", req.Old.KeyID)
	return nil
}

// Restore makes the old key valid again for a rollback: nothing to do when
// it still verifies (a rollback before retire); else the restore call when
// one is configured; else ErrNotRestorable (a revoked key is gone for good
// at most providers).
func (p *Provider) Restore(ctx context.Context, req rotation.RestoreRequest) error {
	if req.Previous != nil && !req.Previous.Secret.IsZero() {
		if err := p.verify(ctx, req.SecretID, req.Previous.Secret, false); err == nil {
			return nil
		}
	}
	if p.spec.Restore == nil || req.Old.KeyID == "" {
		return fmt.Errorf("api key %s was revoked and the provider has no restore call: %w", req.Old, rotation.ErrNotRestorable)
	}
	v, err := p.vars(ctx, vars{secretID: req.SecretID, keyID: req.Old.KeyID})
	if err != nil {
		return err
	}
	_, err = p.do(ctx, "restore", p.spec.Restore, v)
	if errors.Is(err, errGone) {
		return fmt.Errorf("api key %s no longer exists: %w", req.Old, rotation.ErrNotRestorable)
	}
	return err
}

// Discard revokes a key whose run failed before it was published.
func (p *Provider) Discard(ctx context.Context, req rotation.DiscardRequest) error {
	if req.New.KeyID == "" || req.New.KeyID == req.Current.KeyID {
		return nil
	}
	v, err := p.vars(ctx, vars{secretID: req.SecretID})
	if err != nil {
		return err
	}
	return p.revoke(ctx, v, req.New.KeyID)
}

// LastUsed asks the provider when the key was last used. With
// last_used_path the answer holds a time (RFC 3339 or Unix seconds; null
// or missing means never). With usage_path it holds a usage counter: the
// key counts as last used when the counter was first seen at its present
// value by this process (so the first look says "now", and the key is
// unused for as long as the counter stays put).
func (p *Provider) LastUsed(ctx context.Context, req rotation.LastUsedRequest) (rotation.LastUsedResponse, error) {
	c := p.spec.LastUsed
	if c == nil {
		return rotation.LastUsedResponse{}, rotation.ErrUnsupported
	}
	if req.Credential.KeyID == "" {
		return rotation.LastUsedResponse{}, fmt.Errorf("last_used: credential %s has no key id: %w", req.Credential, rotation.ErrUnsupported)
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	v, err := p.vars(ctx, vars{secretID: req.SecretID, keyID: req.Credential.KeyID})
	if err != nil {
		return rotation.LastUsedResponse{}, err
	}
	a, err := p.do(ctx, "last_used", c, v)
	if err != nil {
		return rotation.LastUsedResponse{}, err
	}
	doc, err := jsonpath.Decode(a.body)
	if err != nil {
		return rotation.LastUsedResponse{}, fmt.Errorf("last_used call: the answer is not JSON: %w", err)
	}
	if c.LastUsedPath != "" {
		x, ok := jsonpath.Get(doc, c.LastUsedPath)
		if !ok || x == nil || x == "" {
			return rotation.LastUsedResponse{Never: true}, nil
		}
		s, err := jsonpath.String(doc, c.LastUsedPath)
		if err != nil {
			return rotation.LastUsedResponse{}, fmt.Errorf("last_used call: %w", err)
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return rotation.LastUsedResponse{LastUsed: t}, nil
		}
		if sec, err := strconv.ParseFloat(s, 64); err == nil {
			return rotation.LastUsedResponse{LastUsed: time.Unix(0, int64(sec*float64(time.Second)))}, nil
		}
		return rotation.LastUsedResponse{}, fmt.Errorf("last_used call: the value at %q is neither an RFC 3339 time nor Unix seconds", c.LastUsedPath)
	}
	s, err := jsonpath.String(doc, c.UsagePath)
	if err != nil {
		return rotation.LastUsedResponse{}, fmt.Errorf("last_used call: %w (check usage_path)", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seen, ok := p.usage[req.Credential.KeyID]
	if !ok || seen.value != s {
		seen = usageSeen{value: s, since: now}
		p.usage[req.Credential.KeyID] = seen
	}
	return rotation.LastUsedResponse{LastUsed: seen.since}, nil
}
