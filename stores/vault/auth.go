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
		secretID, err := s.auth.secretID.Resolve()
		if err != nil {
			return rotation.Permanent(fmt.Errorf("vault approle login: secret_id: %w", err))
		}
		body = map[string]any{"role_id": roleID.Reveal(), "secret_id": secretID.Reveal()}
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
	o := op{http.MethodPost, "auth/" + s.auth.mount + "/login", "update"}
	r := s.client.NewRequest(o.method, "/v1/"+o.path)
	r.ClientToken = "" // login paths take no token; a stale one must not be sent
	if err := r.SetJSONBody(body); err != nil {
		return err
	}
	resp, err := s.client.RawRequestWithContext(ctx, r)
	defer closeBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("vault %s login: %w", s.auth.kind, ctx.Err())
		}
		re, ok := responseError(err)
		if !ok || re.StatusCode == 503 || re.StatusCode >= 500 || re.StatusCode == 429 {
			return s.classify(ctx, o, err)
		}
		return rotation.Permanent(newError(ErrLogin, nil, "vault %s login at %s%s refused (status %d): %s; check %s",
			s.auth.kind, o.path, s.inNamespace(), re.StatusCode, vaultErrors(re), s.auth.describe()))
	}
	sec, err := api.ParseSecret(resp.Body)
	if err != nil || sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return fmt.Errorf("vault %s login at %s: no token in the answer", s.auth.kind, o.path)
	}
	s.client.SetToken(sec.Auth.ClientToken)
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	s.setToken(tokenState{ttl: ttl, period: ttl, renewable: sec.Auth.Renewable, at: s.now()})
	s.log.Info("vault: logged in", "auth", s.auth.kind, "ttl", ttl.String(), "renewable", sec.Auth.Renewable)
	return nil
}

// keepToken renews the token before half its TTL has passed, and logs in
// again (AppRole, Kubernetes) when renewal is impossible, is capped by the
// token's max TTL, or the token is gone. It returns when ctx ends, or when
// a static token can no longer be kept alive.
func (s *Store) keepToken(ctx context.Context) {
	defer close(s.done)
	retry := time.Duration(0)
	for {
		ts := s.token()
		var wait time.Duration
		switch {
		case retry > 0:
			wait = retry
		case ts.ttl > 0:
			wait = ts.at.Add(ts.ttl / 2).Sub(s.now())
		default:
			return // the token never expires, or we cannot tell
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := s.refresh(ctx)
		switch {
		case err == nil:
			retry = 0
		case ctx.Err() != nil:
			return
		case errors.Is(err, errCannotRenew):
			s.log.Warn("vault: token cannot be renewed", "auth", s.auth.describe(), "expires", ts.expires(), "error", err)
			return
		default:
			left := time.Until(s.token().expires())
			retry = min(max(left/4, time.Second), 30*time.Second)
			s.log.Warn("vault: token renewal failed; will retry", "retry_in", retry.String(), "error", err)
		}
	}
}

var errCannotRenew = errors.New("token cannot be renewed")

// refresh renews the token, or logs in again where that is possible and
// renewal is not (or no longer gives a useful TTL).
func (s *Store) refresh(ctx context.Context) error {
	ts := s.token()
	if ts.renewable {
		o := op{http.MethodPost, "auth/token/renew-self", "update"}
		body := map[string]any{}
		if ts.period > 0 {
			body["increment"] = fmt.Sprintf("%ds", int64(ts.period/time.Second))
		}
		resp, err := s.raw(ctx, o, nil, body)
		if err == nil {
			sec, perr := api.ParseSecret(resp.Body)
			closeBody(resp)
			if perr == nil && sec != nil && sec.Auth != nil {
				ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
				// Renewal capped by max TTL: log in afresh when we can.
				if !s.auth.canLogin() || ttl >= ts.period/2 {
					s.setToken(tokenState{ttl: ttl, period: ts.period, renewable: sec.Auth.Renewable, at: s.now()})
					s.log.Debug("vault: token renewed", "ttl", ttl.String())
					if !s.auth.canLogin() && ttl < ts.period/2 && ttl > 0 {
						return fmt.Errorf("%w: it reached its max TTL and expires at %s", errCannotRenew, s.token().expires().UTC().Format(time.RFC3339))
					}
					return nil
				}
			}
		} else {
			closeBody(resp)
			if !s.auth.canLogin() {
				cerr := s.classify(ctx, o, err)
				if isInvalidToken(err) {
					return fmt.Errorf("%w: %w", errCannotRenew, cerr)
				}
				return cerr
			}
		}
	}
	if s.auth.canLogin() {
		return s.login(ctx)
	}
	return fmt.Errorf("%w: it is not renewable and expires at %s; give rotator a renewable token or use approle or kubernetes auth",
		errCannotRenew, ts.expires().UTC().Format(time.RFC3339))
}
