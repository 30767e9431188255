package vault

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/rotator/rotator/rotation"
)

// Errors the store returns, for errors.Is. Each comes wrapped in a message
// that says where and what to do; the ones retrying cannot fix are also
// marked rotation.Permanent.
var (
	// ErrSealed: Vault is sealed (503). Retryable: unsealing fixes it.
	ErrSealed = errors.New("vault is sealed")
	// ErrUnreachable: no answer from the address. Retryable.
	ErrUnreachable = errors.New("vault is unreachable")
	// ErrMountNotFound: no KV mount at the configured path. Permanent.
	ErrMountNotFound = errors.New("vault mount not found")
	// ErrNotKVv2: the mount is KV version 1 or another engine. Permanent.
	ErrNotKVv2 = errors.New("vault mount is not KV version 2")
	// ErrPermissionDenied: the token's policies lack a capability. Permanent.
	ErrPermissionDenied = errors.New("vault permission denied")
	// ErrTokenInvalid: the token expired or was revoked and cannot be
	// replaced by a new login. Permanent.
	ErrTokenInvalid = errors.New("vault token expired or revoked")
	// ErrConflict: another writer changed the secret between our read and
	// our check-and-set write. Retryable.
	ErrConflict = errors.New("vault check-and-set conflict")
	// ErrLogin: an AppRole or Kubernetes login was refused. Permanent.
	ErrLogin = errors.New("vault login failed")
	// ErrNamespaceUnsupported: a namespace is configured but the server
	// is not Vault Enterprise, which would ignore it. Permanent.
	ErrNamespaceUnsupported = errors.New("vault has no namespaces")
)

// storeError is a message for people that also matches its kind (and its
// cause) with errors.Is/As.
type storeError struct {
	kind  error
	msg   string
	cause error
}

func (e *storeError) Error() string { return e.msg }

func (e *storeError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func newError(kind error, cause error, format string, args ...any) error {
	return &storeError{kind: kind, msg: fmt.Sprintf(format, args...), cause: cause}
}

// op describes a request for error messages: what it did, on which path
// (relative to the namespace) and which capability it needs.
type op struct {
	method     string
	path       string
	capability string
}

// responseError returns Vault's error response in err, if any.
func responseError(err error) (*api.ResponseError, bool) {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re, true
	}
	return nil, false
}

func hasError(re *api.ResponseError, substr string) bool {
	for _, e := range re.Errors {
		if strings.Contains(strings.ToLower(e), substr) {
			return true
		}
	}
	return false
}

// isInvalidToken reports whether Vault said the token itself is no good
// (expired, revoked, unknown): 403 with "invalid token" beside
// "permission denied" (Vault's documented answer for such tokens).
func isInvalidToken(err error) bool {
	re, ok := responseError(err)
	return ok && re.StatusCode == 403 && hasError(re, "invalid token")
}

// vaultErrors joins Vault's error strings onto one line, unfolding the
// "2 errors occurred:\n\t* a\n\t* b" lists Vault sends. Vault's errors
// never echo request data, so they carry no secret.
func vaultErrors(re *api.ResponseError) string {
	var parts []string
	for _, e := range re.Errors {
		for _, line := range strings.Split(e, "\n") {
			line = strings.TrimSpace(line)
			line = strings.TrimSpace(strings.TrimPrefix(line, "* "))
			if line == "" || multiErrorHeader.MatchString(line) {
				continue
			}
			parts = append(parts, line)
		}
	}
	if len(parts) == 0 {
		return "no error text"
	}
	return strings.Join(parts, "; ")
}

var multiErrorHeader = regexp.MustCompile(`^\d+ errors? occurred:$`)

// classifyResponse turns what the client returned for o into the store's
// errors.
func (s *Store) classifyResponse(o op, err error) error {
	re, ok := responseError(err)
	if !ok {
		return s.transportError(err)
	}
	switch {
	case re.StatusCode == 503 && hasError(re, "sealed"):
		return newError(ErrSealed, nil,
			"vault at %s is sealed (%s %s answered 503): unseal it (vault operator unseal) or wait for auto-unseal; the step is retried",
			s.addr, o.method, s.where(o.path))
	case re.StatusCode == 403 && hasError(re, "invalid token"):
		return rotation.Permanent(newError(ErrTokenInvalid, nil,
			"vault token expired or revoked: %s %s was refused with %q; give rotator a valid token (%s)",
			o.method, s.where(o.path), vaultErrors(re), s.auth.describe()))
	case re.StatusCode == 403:
		return rotation.Permanent(newError(ErrPermissionDenied, nil,
			"permission denied: need %s on %s (vault at %s answered 403 to %s); grant it in the policy of the token rotator uses (%s)",
			o.capability, s.where(o.path), s.addr, o.method, s.auth.describe()))
	case re.StatusCode == 400 && hasError(re, "http request to an https server"):
		return rotation.Permanent(newError(ErrUnreachable, nil,
			"vault at %s speaks HTTPS and was asked in plain HTTP: use an https:// address (stores[].vault.address or VAULT_ADDR)", s.addr))
	case re.StatusCode == 400 && hasError(re, "check-and-set parameter did not match"):
		return newError(ErrConflict, nil,
			"another writer changed %s between rotator's read and its check-and-set write; nothing was overwritten, the step is retried",
			s.where(o.path))
	case re.StatusCode == 404 && hasError(re, "no handler for route"):
		return rotation.Permanent(newError(ErrMountNotFound, nil,
			"vault at %s has no mount for %s: check stores[].vault.mount (%q) and namespace (%q)",
			s.addr, s.where(o.path), s.mount, s.namespace))
	case re.StatusCode >= 500:
		return fmt.Errorf("vault %s %s: status %d: %s", o.method, s.where(o.path), re.StatusCode, vaultErrors(re))
	case re.StatusCode == 429:
		return fmt.Errorf("vault %s %s: rate limited (429): %s", o.method, s.where(o.path), vaultErrors(re))
	default:
		return rotation.Permanent(fmt.Errorf("vault %s %s: status %d: %s", o.method, s.where(o.path), re.StatusCode, vaultErrors(re)))
	}
}

// transportError explains a request that got no answer from Vault.
func (s *Store) transportError(err error) error {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		certInvalid      x509.CertificateInvalidError
		recordHeader     tls.RecordHeaderError
		verify           *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &certInvalid) ||
		errors.As(err, &verify) || errors.As(err, &recordHeader) {
		return rotation.Permanent(newError(ErrUnreachable, err,
			"TLS to vault at %s failed: %v; check stores[].vault.tls.ca_file and tls.server_name (or VAULT_CACERT), and that the address uses the right scheme",
			s.addr, unwrapURL(err)))
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return rotation.Permanent(newError(ErrUnreachable, err,
			"vault at %s answered plain HTTP to HTTPS: use an http:// address (stores[].vault.address or VAULT_ADDR) or enable TLS on the listener", s.addr))
	}
	return newError(ErrUnreachable, err,
		"vault at %s is unreachable: %v; check the address (stores[].vault.address or VAULT_ADDR), that Vault is running and that this host can reach it",
		s.addr, unwrapURL(err))
}

// unwrapURL drops url.Error's "Get "http://...": " prefix, which repeats
// the address and the query string.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// where names a path for messages, with the namespace when there is one.
func (s *Store) where(path string) string {
	if s.namespace != "" {
		return path + " in namespace " + s.namespace
	}
	return path
}
