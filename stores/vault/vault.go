package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// Config builds a Store.
type Config struct {
	// Spec is the store's entry in policies.yaml.
	Spec *policy.VaultSpec
	// Logger receives token renewals and publishes; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// beforeWrite, when set, runs between the read of the current version
	// and the check-and-set write (tests use it to race another writer).
	beforeWrite func()
}

// Store publishes secret versions to a KV v2 mount.
type Store struct {
	client *api.Client
	// loginClient is client without a token, for login paths.
	loginClient *api.Client
	addr        string
	mount       string
	namespace   string
	auth        *authMethod
	log         *slog.Logger
	now         func() time.Time

	beforeWrite func()

	mu  sync.Mutex // guards tok; never held across a request
	tok tokenState

	stop      context.CancelFunc
	done      chan struct{}
	newToken  chan struct{} // a login installed a new token
	closeOnce sync.Once
}

var _ rotation.Store = (*Store)(nil)

// Validate checks spec without contacting Vault: the mount is set and
// plain, at most one auth method is set, and each has what it needs.
func Validate(spec *policy.VaultSpec) error {
	if spec == nil {
		return errors.New("vault store: no vault settings")
	}
	var problems []string
	m := strings.Trim(spec.Mount, "/")
	switch {
	case m == "":
		problems = append(problems, "mount is required (the KV v2 mount path, e.g. secret)")
	case strings.Contains(m, "//") || hasDotSegment(m):
		problems = append(problems, fmt.Sprintf("mount %q is not a clean path", spec.Mount))
	}
	if spec.Address != "" {
		u, err := url.Parse(spec.Address)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("address %q is not an http(s) URL such as https://vault.example.com:8200", spec.Address))
		}
	}
	a := spec.Auth
	n := 0
	if a.Token != nil {
		n++
		if err := checkRef("auth.token.token", a.Token.Token); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if a.AppRole != nil {
		n++
		if err := checkRef("auth.approle.role_id", a.AppRole.RoleID); err != nil {
			problems = append(problems, err.Error())
		}
		if err := checkRef("auth.approle.secret_id", a.AppRole.SecretID); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if a.Kubernetes != nil {
		n++
		if a.Kubernetes.Role == "" {
			problems = append(problems, "auth.kubernetes.role is required")
		}
	}
	if n > 1 {
		problems = append(problems, "set at most one of auth.token, auth.approle and auth.kubernetes")
	}
	if len(problems) > 0 {
		return fmt.Errorf("vault store: %s", strings.Join(problems, "; "))
	}
	return nil
}

func checkRef(field string, r policy.Ref) error {
	switch {
	case r.Env == "" && r.File == "":
		return fmt.Errorf("%s: set env or file", field)
	case r.Env != "" && r.File != "":
		return fmt.Errorf("%s: set only one of env and file", field)
	}
	return nil
}

func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// New connects to Vault, logs in with the configured method, checks that
// the mount is KV version 2 and starts renewing the token in the
// background until Close.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := Validate(cfg.Spec); err != nil {
		return nil, rotation.Permanent(err)
	}
	spec := cfg.Spec
	addr := spec.Address
	if addr == "" {
		addr = os.Getenv(api.EnvVaultAddress)
	}
	if addr == "" {
		return nil, rotation.Permanent(errors.New("vault store: no address: set stores[].vault.address or VAULT_ADDR"))
	}
	conf := api.DefaultConfig()
	if conf.Error != nil {
		return nil, rotation.Permanent(fmt.Errorf("vault store: read VAULT_* environment: %w", conf.Error))
	}
	conf.Address = addr
	// The engine retries steps with its own backoff; a store request that
	// fails says so at once.
	conf.MaxRetries = 0
	if spec.TLS.CAFile != "" || spec.TLS.ServerName != "" {
		if err := conf.ConfigureTLS(&api.TLSConfig{CACert: spec.TLS.CAFile, TLSServerName: spec.TLS.ServerName}); err != nil {
			return nil, rotation.Permanent(fmt.Errorf("vault store: tls (ca_file %q): %w", spec.TLS.CAFile, err))
		}
	}
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, rotation.Permanent(fmt.Errorf("vault store: client for %s: %w", addr, err))
	}
	// NewClient picks up VAULT_TOKEN; the auth method decides the token.
	client.ClearToken()
	if spec.Namespace != "" {
		client.SetNamespace(strings.Trim(spec.Namespace, "/"))
	}
	auth, err := newAuthMethod(spec.Auth)
	if err != nil {
		return nil, rotation.Permanent(fmt.Errorf("vault store: %w", err))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Store{
		client:      client,
		addr:        addr,
		mount:       strings.Trim(spec.Mount, "/"),
		namespace:   strings.Trim(client.Namespace(), "/"),
		auth:        auth,
		log:         log.With("store", "vault", "vault_addr", addr, "mount", strings.Trim(spec.Mount, "/")),
		now:         now,
		beforeWrite: cfg.beforeWrite,
		done:        make(chan struct{}),
		newToken:    make(chan struct{}, 1),
	}
	s.loginClient, err = client.Clone()
	if err != nil {
		return nil, rotation.Permanent(fmt.Errorf("vault store: client for %s: %w", addr, err))
	}
	// NewClient, under Clone, reads VAULT_TOKEN and VAULT_NAMESPACE.
	s.loginClient.ClearToken()
	s.loginClient.ClearNamespace()
	if s.namespace != "" {
		s.loginClient.SetNamespace(s.namespace)
		if err := s.checkNamespaces(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.authenticate(ctx); err != nil {
		return nil, err
	}
	if err := s.checkMount(ctx); err != nil {
		return nil, err
	}
	// keepToken watches the token New installed.
	select {
	case <-s.newToken:
	default:
	}
	rctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.keepToken(rctx)
	return s, nil
}

// Close stops the token renewal and revokes a token the store logged in
// for. It is safe to call more than once.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		if s.auth.canLogin() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
				s.log.Warn("vault: revoke the login token", "error", s.classify(ctx, op{http.MethodPut, "auth/token/revoke-self", "update"}, err))
			}
		}
	})
}

// checkMount asks Vault what is mounted at the configured path
// (sys/internal/ui/mounts/<mount>, which any token with a capability under
// the mount may read) and refuses anything but a KV version 2 mount rooted
// exactly there.
func (s *Store) checkMount(ctx context.Context) error {
	o := op{http.MethodGet, "sys/internal/ui/mounts/" + s.mount, "read (or any capability under " + s.mount + "/)"}
	sec, found, err := s.read(ctx, o, nil)
	if err != nil {
		if errors.Is(err, ErrPermissionDenied) {
			// Vault answers 403 both for a path with no mount and for a
			// mount the token may not use, so that mounts cannot be listed.
			return rotation.Permanent(newError(ErrMountNotFound, nil,
				"vault at %s: mount %s/ not found%s, or the token has no capability under it: check stores[].vault.mount and the token's policies (%s)",
				s.addr, s.mount, s.inNamespace(), s.auth.describe()))
		}
		return err
	}
	if !found || sec == nil {
		return rotation.Permanent(newError(ErrMountNotFound, nil, "vault at %s: mount %s/ not found%s: check stores[].vault.mount",
			s.addr, s.mount, s.inNamespace()))
	}
	typ, _ := sec.Data["type"].(string)
	path, _ := sec.Data["path"].(string)
	path = strings.Trim(path, "/")
	version := ""
	if opts, ok := sec.Data["options"].(map[string]any); ok {
		version, _ = opts["version"].(string)
	}
	switch {
	case path != "" && path != s.mount:
		return rotation.Permanent(newError(ErrMountNotFound, nil,
			"vault at %s: %s is not a mount but a path inside mount %s/: set stores[].vault.mount to %q and put the rest in each publish path",
			s.addr, s.mount, path, path))
	case typ != "kv" && typ != "generic":
		return rotation.Permanent(newError(ErrNotKVv2, nil,
			"vault at %s: mount %s/ is a %q secrets engine; rotator needs KV v2: vault secrets enable -path=%s kv-v2", s.addr, s.mount, typ, s.mount))
	case version != "2":
		return rotation.Permanent(newError(ErrNotKVv2, nil,
			"mount %s/ is KV version 1; rotator needs KV v2: vault kv enable-versioning %s/", s.mount, s.mount))
	}
	return nil
}

// checkNamespaces refuses a configured namespace on a Vault without
// namespaces. Open-source Vault ignores the X-Vault-Namespace header, so
// a store configured with namespace team-a would read and write the root
// namespace's mount of the same name. sys/health (unauthenticated, asked
// without the namespace header) tells: "enterprise" (Vault 1.16 and
// later), or a version ending in "+ent" for older Enterprise releases.
func (s *Store) checkNamespaces(ctx context.Context) error {
	c, err := s.client.Clone()
	if err != nil {
		return fmt.Errorf("vault store: client for %s: %w", s.addr, err)
	}
	c.ClearToken()
	c.ClearNamespace()
	h, err := c.Sys().HealthWithContext(ctx)
	if err != nil {
		return s.classify(ctx, op{http.MethodGet, "sys/health", "none (unauthenticated)"}, err)
	}
	if hasNamespaces(h) {
		return nil
	}
	return rotation.Permanent(newError(ErrNamespaceUnsupported, nil,
		"vault at %s is not Vault Enterprise (version %s): it has no namespaces and would use the root namespace instead of namespace %q; remove stores[].vault.namespace, or point the store at a Vault Enterprise or HCP Vault server",
		s.addr, h.Version, s.namespace))
}

// hasNamespaces reports whether a sys/health answer comes from a Vault
// with namespaces (Enterprise, HCP Vault).
func hasNamespaces(h *api.HealthResponse) bool {
	return h.Enterprise || strings.Contains(h.Version, "+ent")
}

func (s *Store) inNamespace() string {
	if s.namespace == "" {
		return ""
	}
	return " in namespace " + s.namespace
}

// withToken runs fn, which sends one request with the current token.
// When Vault says the token is invalid and the auth method can log in,
// it logs in again and runs fn once more.
func (s *Store) withToken(ctx context.Context, fn func() error) error {
	err := fn()
	if err == nil || !s.auth.canLogin() {
		return err
	}
	if !isInvalidToken(err) && !s.tokenLooksDead(ctx, err) {
		return err
	}
	s.log.Info("vault: token no longer valid; logging in again", "auth", s.auth.kind)
	if lerr := s.login(ctx); lerr != nil {
		return lerr
	}
	return fn()
}

// tokenLooksDead handles Vaults that answer a dead token with a bare
// "permission denied": a 403 on lookup-self too means the token is gone.
func (s *Store) tokenLooksDead(ctx context.Context, err error) bool {
	re, ok := responseError(err)
	if !ok || re.StatusCode != 403 {
		return false
	}
	_, lerr := s.client.Auth().Token().LookupSelfWithContext(ctx)
	re2, ok := responseError(lerr)
	return ok && re2.StatusCode == 403
}

func closeBody(resp *api.Response) {
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
}

// read GETs a path and parses Vault's JSON answer. A 404 is found=false
// and no error; the returned secret then holds what Vault said anyway
// (a deleted KV version's metadata). It reads the raw answer because the
// parsed reads of the client library (Logical().Read, the KVv2 helpers)
// turn a 404 "no handler for route" (no such mount) into "not found".
func (s *Store) read(ctx context.Context, o op, params url.Values) (*api.Secret, bool, error) {
	var resp *api.Response
	err := s.withToken(ctx, func() error {
		closeBody(resp)
		var err error
		resp, err = s.client.Logical().ReadRawWithDataWithContext(ctx, o.path, params)
		return err
	})
	defer closeBody(resp)
	if err != nil {
		if re, ok := responseError(err); ok && re.StatusCode == 404 && !hasError(re, "no handler for route") {
			var sec *api.Secret
			if resp != nil && resp.Body != nil {
				sec, _ = api.ParseSecret(resp.Body)
			}
			return sec, false, nil
		}
		return nil, false, s.classify(ctx, o, s.explainDenied(ctx, err))
	}
	sec, err := api.ParseSecret(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("vault %s %s: parse response: %w", o.method, s.where(o.path), err)
	}
	return sec, true, nil
}

// write sends body and returns Vault's parsed answer (nil for 204).
func (s *Store) write(ctx context.Context, o op, body map[string]any) (*api.Secret, error) {
	var sec *api.Secret
	err := s.withToken(ctx, func() error {
		var err error
		sec, err = s.client.Logical().WriteWithContext(ctx, o.path, body)
		return err
	})
	if err != nil {
		return nil, s.classify(ctx, o, s.explainDenied(ctx, err))
	}
	return sec, nil
}

// explainDenied turns a bare 403 for a static token that lookup-self also
// refuses into the "invalid token" answer newer Vaults give.
func (s *Store) explainDenied(ctx context.Context, err error) error {
	re, ok := responseError(err)
	if !ok || re.StatusCode != 403 || hasError(re, "invalid token") || s.auth.canLogin() {
		return err
	}
	if !s.tokenLooksDead(ctx, err) {
		return err
	}
	return &api.ResponseError{HTTPMethod: re.HTTPMethod, URL: re.URL, StatusCode: 403,
		Errors: append(append([]string(nil), re.Errors...), "invalid token (lookup-self refused too)")}
}

// classify maps a request's error, with the caller's context in mind.
func (s *Store) classify(ctx context.Context, o op, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("vault %s %s: %w", o.method, s.where(o.path), ctx.Err())
	}
	return s.classifyResponse(o, err)
}

// jsonInt reads an integer from Vault's JSON (json.Number, or a string).
func jsonInt(v any) int64 {
	switch x := v.(type) {
	case json.Number:
		n, _ := x.Int64()
		return n
	case float64:
		return int64(x)
	case int:
		return int64(x)
	case int64:
		return x
	case string:
		var n int64
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return 0
}
