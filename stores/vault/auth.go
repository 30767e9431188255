package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// DefaultKubernetesJWTFile is where Kubernetes mounts a pod's
// service-account token.
const DefaultKubernetesJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// authMethod is how the store gets a token. Secret material is kept as
// secret.Value and read again from its source at each login, so a rotated
// secret_id or projected JWT is picked up.
type authMethod struct {
	kind string // "token", "approle", "kubernetes"

	// token
	tokenRef    *policy.Ref // nil: VAULT_TOKEN, then ~/.vault-token
	tokenSource string      // for messages: "env VAULT_TOKEN", "file /x"

	// approle
	mount    string
	roleID   policy.Ref
	secretID policy.Ref

	// kubernetes
	role    string
	jwtFile string
}

func newAuthMethod(a policy.VaultAuthSpec) (*authMethod, error) {
	switch {
	case a.AppRole != nil:
		m := strings.Trim(a.AppRole.Mount, "/")
		if m == "" {
			m = "approle"
		}
		return &authMethod{kind: "approle", mount: m, roleID: a.AppRole.RoleID, secretID: a.AppRole.SecretID}, nil
	case a.Kubernetes != nil:
		m := strings.Trim(a.Kubernetes.Mount, "/")
		if m == "" {
			m = "kubernetes"
		}
		f := a.Kubernetes.JWTFile
		if f == "" {
			f = DefaultKubernetesJWTFile
		}
		return &authMethod{kind: "kubernetes", mount: m, role: a.Kubernetes.Role, jwtFile: f}, nil
	case a.Token != nil:
		ref := a.Token.Token
		return &authMethod{kind: "token", tokenRef: &ref, tokenSource: describeRef(ref)}, nil
	}
	return &authMethod{kind: "token"}, nil
}

func (a *authMethod) canLogin() bool { return a != nil && a.kind != "token" }

// describe names the method and where its material comes from, for
// messages. It never includes the material.
func (a *authMethod) describe() string {
	if a == nil {
		return "no auth method"
	}
	switch a.kind {
	case "approle":
		return fmt.Sprintf("approle login at auth/%s/login, role_id from %s", a.mount, describeRef(a.roleID))
	case "kubernetes":
		return fmt.Sprintf("kubernetes login at auth/%s/login as role %q, jwt from file %s", a.mount, a.role, a.jwtFile)
	}
	if a.tokenSource != "" {
		return "token from " + a.tokenSource
	}
	return "token from VAULT_TOKEN or ~/.vault-token"
}

func describeRef(r policy.Ref) string { return r.String() }

// staticToken finds the token for the token method: the spec's ref, else
// VAULT_TOKEN, else the CLI's ~/.vault-token.
func (a *authMethod) staticToken() (secret.Value, error) {
	if a.tokenRef != nil {
		v, err := a.tokenRef.Resolve()
		if err != nil {
			return v, fmt.Errorf("auth.token.token: %w", err)
		}
		return v, nil
	}
	if v := strings.TrimSpace(os.Getenv(api.EnvVaultToken)); v != "" {
		a.tokenSource = "env VAULT_TOKEN"
		return secret.New(v), nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		f := filepath.Join(home, ".vault-token")
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) != "" {
			a.tokenSource = "file " + f
			return secret.New(strings.TrimSpace(string(b))), nil
		}
	}
	return secret.Value{}, errors.New("no vault token: set VAULT_TOKEN, or stores[].vault.auth.token, approle or kubernetes")
}

// tokenState is what the store knows about its token's lifetime.
type tokenState struct {
	ttl       time.Duration // lifetime when obtained or renewed; 0: never expires
	period    time.Duration // TTL to ask for at renewal
	renewable bool
	at        time.Time // when ttl was learned
}

func (t tokenState) expires() time.Time {
	if t.ttl <= 0 {
		return time.Time{}
	}
	return t.at.Add(t.ttl)
}

func (s *Store) setToken(ts tokenState) {
	s.mu.Lock()
	s.tok = ts
	s.mu.Unlock()
}

func (s *Store) token() tokenState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

// authenticate gets the first token: a login, or the static token checked
// with lookup-self.
func (s *Store) authenticate(ctx context.Context) error {
	if s.auth.canLogin() {
		return s.login(ctx)
	}
	tok, err := s.auth.staticToken()
	if err != nil {
		return rotation.Permanent(fmt.Errorf("vault store: %w", err))
	}
	s.client.SetToken(tok.Reveal())
	o := op{http.MethodGet, "auth/token/lookup-self", "read"}
	sec, _, err := s.read(ctx, o, nil)
	if err != nil {
		if errors.Is(err, ErrPermissionDenied) {
			// A token without the default policy cannot look itself up;
			// it may still work. Renewal is off.
			s.log.Warn("vault: token may not look itself up (no default policy?); token renewal disabled", "auth", s.auth.describe())
			s.setToken(tokenState{at: s.now()})
			return nil
		}
		return err
	}
	ts := tokenState{at: s.now()}
	if sec != nil && sec.Data != nil {
		ts.ttl = time.Duration(jsonInt(sec.Data["ttl"])) * time.Second
		ts.period = time.Duration(jsonInt(sec.Data["creation_ttl"])) * time.Second
		ts.renewable, _ = sec.Data["renewable"].(bool)
	}
	if ts.period <= 0 {
		ts.period = ts.ttl
	}
	s.setToken(ts)
	s.log.Debug("vault: token ok", "ttl", ts.ttl.String(), "renewable", ts.renewable)
	return nil
}

// login logs in with AppRole or Kubernetes and installs the new token.
func (s *Store) login(ctx context.Context) error {
	var body map[string]any
	switch s.auth.kind {
	case "approle":
		roleID, err := s.auth.roleID.Resolve()
		if err != nil {
			return rotation.Permanent(fmt.Errorf("vault approle login: role_id: %w", err))
		}
		// Vault trims role_id and, when nothing is left, answers 500
		// "failed to determine alias name from login request": a
		// configuration error that no retry fixes.
		if strings.TrimSpace(roleID.Reveal()) == "" {
			return rotation.Permanent(newError(ErrLogin, nil, "vault approle login: role_id from %s is blank: set auth.approle.role_id to the role's id (vault read auth/%s/role/<role>/role-id)",
				describeRef(s.auth.roleID), s.auth.mount))
		}
		secretID, err := s.auth.secretID.Resolve()
		if err != nil {
			return rotation.Permanent(fmt.Errorf("vault approle login: secret_id: %w", err))
		}
		body = map[string]any{"role_id": strings.TrimSpace(roleID.Reveal()), "secret_id": strings.TrimSpace(secretID.Reveal())}
	case "kubernetes":
		b, err := os.ReadFile(s.auth.jwtFile)
		if err != nil {
			return rotation.Permanent(fmt.Errorf("vault kubernetes login: read service-account token %s: %w (is the pod's token mounted? set auth.kubernetes.jwt_file)",
				s.auth.jwtFile, errors.Unwrap(err)))
		}
		body = map[string]any{"role": s.auth.role, "jwt": strings.TrimSpace(string(b))}
	default:
		return fmt.Errorf("vault: auth method %s cannot log in", s.auth.kind)
	}
	o := op{http.MethodPut, "auth/" + s.auth.mount + "/login", "update"}
	// Login paths take no token: loginClient has none, so a stale one is
	// never sent.
	sec, err := s.loginClient.Logical().WriteWithContext(ctx, o.path, body)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("vault %s login: %w", s.auth.kind, ctx.Err())
		}
		re, ok := responseError(err)
		switch {
		case ok && re.StatusCode == 500 && hasError(re, "failed to determine alias name"):
			return rotation.Permanent(newError(ErrLogin, nil, "vault %s login at %s%s refused (status 500): %s; the login request lacks what the method needs (approle: role_id); check %s",
				s.auth.kind, o.path, s.inNamespace(), vaultErrors(re), s.auth.describe()))
		case !ok || re.StatusCode >= 500 || re.StatusCode == 429:
			return s.classify(ctx, o, err)
		case re.StatusCode == 403 && s.auth.kind == "kubernetes":
			// Vault answers a JWT the Kubernetes API refuses and a
			// Kubernetes API it cannot reach with the same 403.
			return rotation.Permanent(newError(ErrLogin, nil, "vault kubernetes login at %s%s refused (status 403): %s; either the service-account token is not valid for role %q (bound service account names and namespaces, audience), or Vault cannot reach the Kubernetes API to review it (auth/%s/config kubernetes_host); check %s",
				o.path, s.inNamespace(), vaultErrors(re), s.auth.role, s.auth.mount, s.auth.describe()))
		}
		return rotation.Permanent(newError(ErrLogin, nil, "vault %s login at %s%s refused (status %d): %s; check %s",
			s.auth.kind, o.path, s.inNamespace(), re.StatusCode, vaultErrors(re), s.auth.describe()))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return fmt.Errorf("vault %s login at %s: no token in the answer", s.auth.kind, o.path)
	}
	s.client.SetToken(sec.Auth.ClientToken)
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	s.setToken(tokenState{ttl: ttl, period: ttl, renewable: sec.Auth.Renewable, at: s.now()})
	s.log.Info("vault: logged in", "auth", s.auth.kind, "ttl", ttl.String(), "renewable", sec.Auth.Renewable)
	// Tell keepToken to watch the new token.
	select {
	case s.newToken <- struct{}{}:
	default:
	}
	return nil
}

// keepToken keeps the token alive until ctx ends, with the client
// library's LifetimeWatcher: it renews the token (at about two thirds of
// its TTL) and says when renewal can no longer keep it alive (not
// renewable, max TTL reached, renewal refused). An AppRole or Kubernetes
// store then logs in again; a static token is left to expire, and the
// requests after that say so.
func (s *Store) keepToken(ctx context.Context) {
	defer close(s.done)
	retry := time.Second
	for {
		ts := s.token()
		if ts.ttl <= 0 {
			return // the token never expires, or we cannot tell
		}
		if !s.auth.canLogin() && !ts.renewable {
			s.log.Warn("vault: token is not renewable; give rotator a renewable token or use approle or kubernetes auth",
				"auth", s.auth.describe(), "expires", ts.expires().UTC().Format(time.RFC3339))
			return
		}
		err := s.watch(ctx, ts)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errNewToken):
			continue
		case !s.auth.canLogin():
			s.log.Warn("vault: token can no longer be renewed (max TTL reached or renewal refused); give rotator a renewable token without a short max TTL, or use approle or kubernetes auth",
				"auth", s.auth.describe(), "expires", s.token().expires().UTC().Format(time.RFC3339), "error", err)
			return
		}
		if err := s.login(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("vault: login to replace the token failed; will retry", "retry_in", retry.String(), "error", err)
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			retry = min(retry*2, 30*time.Second)
			continue
		}
		retry = time.Second
		// login announced the new token on s.newToken; drop that, the
		// loop watches it now.
		select {
		case <-s.newToken:
		default:
		}
	}
}

var errNewToken = errors.New("a new token replaced the watched one")

// watch runs a LifetimeWatcher on the current token until it is done,
// ctx ends, or a login (after a request found the token dead) installs
// another token.
func (s *Store) watch(ctx context.Context, ts tokenState) error {
	w, err := s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{
		Secret: &api.Secret{Auth: &api.SecretAuth{
			ClientToken:   s.client.Token(),
			Renewable:     ts.renewable,
			LeaseDuration: int(ts.ttl / time.Second),
		}},
		Increment: int(ts.period / time.Second),
	})
	if err != nil {
		return err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.newToken:
			return errNewToken
		case err := <-w.DoneCh():
			return err
		case r := <-w.RenewCh():
			if r == nil || r.Secret == nil || r.Secret.Auth == nil {
				continue
			}
			ttl := time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
			s.setToken(tokenState{ttl: ttl, period: ts.period, renewable: r.Secret.Auth.Renewable, at: s.now()})
			s.log.Debug("vault: token renewed", "ttl", ttl.String())
		}
	}
}
