// Package vaulttest runs an HTTP server that speaks the part of HashiCorp
// Vault's API that stores/vault uses, so its tests need no Vault binary.
//
// # What it speaks
//
// Written from Vault's API documentation, with Vault's status codes and
// error bodies ({"errors":[...]}):
//
//   - KV v2 (/v1/<mount>/data/<path>, /metadata/<path>, /delete/<path>):
//     reads of the latest version or ?version=N (404 with the version's
//     metadata for a deleted or destroyed one), writes with options.cas
//     (cas=0 creates only; a mismatch is 400 "check-and-set parameter did
//     not match the current version"), max_versions, per-secret
//     custom_metadata, soft deletes.
//   - KV v1 mounts (plain GET/PUT/DELETE on <mount>/<path>), so a client
//     that writes to <mount>/data/<path> on a v1 mount silently creates a
//     secret literally named "data/<path>", as Vault does.
//   - sys/internal/ui/mounts/<path> (mount type and options.version),
//     sys/seal-status and sys/health.
//   - auth/token/lookup-self, renew-self, revoke-self with TTLs, max TTLs
//     and expiry; auth/<approle mount>/login (role_id, secret_id) and
//     auth/<kubernetes mount>/login (role, jwt).
//   - Root-only set-up: sys/policies/acl/<name> (JSON policies only),
//     auth/token/create, sys/mounts/<path> (kv, kv-v2), so tests can set the
//     server up with the same calls as a real Vault.
//   - ACL policies: path rules with Vault's glob forms (a trailing "*",
//     "+" for one segment) and the capabilities create, read, update,
//     delete, list and deny. The root token bypasses them, as in Vault.
//   - X-Vault-Namespace: mounts live in a namespace; tokens are global.
//
// # What it does not
//
// Leases other than tokens, response wrapping, entities, most of sys/,
// replication, and every secrets engine but KV.
//
// # Errors, as Vault returns them
//
//	403 {"errors":["1 error occurred:\n\t* permission denied\n\n"]}                       ACL denies
//	403 {"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}   expired, revoked or unknown token
//	503 {"errors":["Vault is sealed"]}                                                     sealed
//	400 {"errors":["check-and-set parameter did not match the current version"]}           CAS mismatch
//	404 {"errors":[]}                                                                      no secret
//	404 {"errors":["no handler for route ..."]}                                           no mount (root token)
package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Error strings Vault returns.
const (
	errPermissionDenied = "1 error occurred:\n\t* permission denied\n\n"
	errInvalidToken     = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
	errSealed           = "Vault is sealed"
	errCASMismatch      = "check-and-set parameter did not match the current version"
	errCASRequired      = "check-and-set parameter required for this call"
)

// Server is a fake Vault. All its methods are safe for concurrent use.
type Server struct {
	// Addr is the server's address, for VAULT_ADDR ("http://127.0.0.1:port").
	Addr string
	// RootToken has every capability and never expires.
	RootToken string

	t        testing.TB
	hostPort string
	srv      *http.Server

	mu          sync.Mutex
	now         func() time.Time
	sealed      bool
	mounts      map[string]*mount // namespace + "\x00" + mount path ("secret/")
	authMounts  map[string]string // auth mount path ("approle") -> type
	tokens      map[string]*token
	policies    map[string]map[string][]string
	approles    map[string]*appRole // by role_id
	k8sRoles    map[string]*KubernetesRole
	requests    []string
	logins      int
	renewals    int
	accessorSeq int
}

type mount struct {
	version     int // 1 or 2
	maxVersions int
	casRequired bool
	kv1         map[string]map[string]any
	kv2         map[string]*kvSecret
}

type kvSecret struct {
	created        time.Time
	updated        time.Time
	current        int
	oldest         int
	maxVersions    int
	customMetadata map[string]string
	versions       map[int]*kvVersion
}

type kvVersion struct {
	data      map[string]any
	created   time.Time
	deleted   time.Time
	destroyed bool
}

type token struct {
	id        string
	accessor  string
	policies  []string
	created   time.Time
	ttl       time.Duration // creation TTL; 0 means never expires
	expires   time.Time
	maxExpire time.Time
	renewable bool
	revoked   bool
	root      bool
	path      string
	meta      map[string]string
}

type appRole struct {
	name     string
	secretID string
	opts     AppRoleOptions
}

// TokenOptions shape a token.
type TokenOptions struct {
	// Policies attached besides "default".
	Policies []string
	// TTL is the token's lifetime; zero means it never expires.
	TTL time.Duration
	// MaxTTL caps renewals; zero means no cap.
	MaxTTL time.Duration
	// Renewable lets renew-self extend it.
	Renewable bool
}

// AppRoleOptions shape an AppRole role and the tokens it issues.
type AppRoleOptions struct {
	Token TokenOptions
}

// KubernetesRole is a Kubernetes auth role: a login with Role and JWT
// gets a token shaped by Token.
type KubernetesRole struct {
	// JWT is the service-account token the role accepts.
	JWT   string
	Token TokenOptions
}

// New starts a server with a KV v2 mount at "secret/", AppRole auth at
// "approle/" and Kubernetes auth at "kubernetes/", and stops it when the
// test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:          t,
		now:        time.Now,
		mounts:     map[string]*mount{},
		authMounts: map[string]string{"approle": "approle", "kubernetes": "kubernetes"},
		tokens:     map[string]*token{},
		policies:   map[string]map[string][]string{},
		approles:   map[string]*appRole{},
		k8sRoles:   map[string]*KubernetesRole{},
	}
	s.policies["default"] = map[string][]string{
		"auth/token/lookup-self": {"read"},
		"auth/token/renew-self":  {"update"},
		"auth/token/revoke-self": {"update"},
	}
	s.RootToken = "hvs.root-" + randomHex(12)
	s.tokens[s.RootToken] = &token{id: s.RootToken, accessor: randomHex(12), policies: []string{"root"},
		created: s.now(), root: true, path: "auth/token/root"}
	s.EnableKV("", "secret", 2)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vaulttest: listen: %v", err)
	}
	s.hostPort = ln.Addr().String()
	s.Addr = "http://" + s.hostPort
	s.mu.Lock()
	s.serveLocked(ln)
	s.mu.Unlock()
	t.Cleanup(func() { s.SetUnreachable(true) })
	return s
}

// EnableKV mounts a KV secrets engine of the given version (1 or 2) at
// path in namespace ns ("" is the root namespace).
func (s *Server) EnableKV(ns, path string, version int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mounts[mountKey(ns, path)] = &mount{version: version, maxVersions: 10,
		kv1: map[string]map[string]any{}, kv2: map[string]*kvSecret{}}
}

// DisableMount removes the mount at path in namespace ns and its secrets.
func (s *Server) DisableMount(ns, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mounts, mountKey(ns, path))
}

// SetCASRequired makes every write to the mount carry options.cas.
func (s *Server) SetCASRequired(ns, path string, required bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.mounts[mountKey(ns, path)]; m != nil {
		m.casRequired = required
	}
}

// Seal makes every request but sys/seal-status and sys/health fail with
// 503 "Vault is sealed".
func (s *Server) Seal() { s.mu.Lock(); s.sealed = true; s.mu.Unlock() }

// Unseal undoes Seal.
func (s *Server) Unseal() { s.mu.Lock(); s.sealed = false; s.mu.Unlock() }

// SetUnreachable stops the server (open connections are closed, new ones
// refused at Addr) or, with false, serves at Addr again.
func (s *Server) SetUnreachable(down bool) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if down {
		if s.srv != nil {
			_ = s.srv.Close()
			s.srv = nil
		}
		return
	}
	if s.srv != nil {
		return
	}
	ln, err := net.Listen("tcp", s.hostPort)
	if err != nil {
		s.t.Fatalf("vaulttest: listen again at %s: %v", s.hostPort, err)
	}
	s.serveLocked(ln)
}

func (s *Server) serveLocked(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

// SetPolicy defines (or replaces) an ACL policy: path pattern ->
// capabilities ("create", "read", "update", "delete", "list", "deny").
func (s *Server) SetPolicy(name string, rules map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies[name] = rules
}

// CreateToken issues a token with the default policy and o.Policies.
func (s *Server) CreateToken(o TokenOptions) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(o, "auth/token/create", nil).id
}

// RevokeToken revokes a token: every later use is 403 invalid token.
func (s *Server) RevokeToken(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tk := s.tokens[id]; tk != nil {
		tk.revoked = true
	}
}

// ExpireToken makes a token's TTL run out now.
func (s *Server) ExpireToken(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tk := s.tokens[id]; tk != nil {
		tk.expires = s.now().Add(-time.Second)
	}
}

// TokenTTL returns the time a token has left, zero for one that never
// expires, and false for an unknown, revoked or expired token.
func (s *Server) TokenTTL(id string) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tk := s.validTokenLocked(id)
	if tk == nil {
		return 0, false
	}
	if tk.expires.IsZero() {
		return 0, true
	}
	return tk.expires.Sub(s.now()), true
}

// AddAppRole creates an AppRole role and returns its role_id and a
// secret_id.
func (s *Server) AddAppRole(name string, o AppRoleOptions) (roleID, secretID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	roleID, secretID = randomUUID(), randomUUID()
	s.approles[roleID] = &appRole{name: name, secretID: secretID, opts: o}
	return roleID, secretID
}

// AddKubernetesRole creates a Kubernetes auth role.
func (s *Server) AddKubernetesRole(name string, r KubernetesRole) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k8sRoles[name] = &r
}

// EnableAuth mounts an auth method ("approle" or "kubernetes") at path.
func (s *Server) EnableAuth(path, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authMounts[strings.Trim(path, "/")] = kind
}

// Logins counts successful AppRole and Kubernetes logins.
func (s *Server) Logins() int { s.mu.Lock(); defer s.mu.Unlock(); return s.logins }

// Renewals counts successful renew-self calls.
func (s *Server) Renewals() int { s.mu.Lock(); defer s.mu.Unlock(); return s.renewals }

// Requests returns "METHOD path" of every request served, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// CurrentVersion returns the current_version of a KV v2 secret (0 when
// there is none).
func (s *Server) CurrentVersion(ns, mountPath, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mounts[mountKey(ns, mountPath)]
	if m == nil || m.kv2[path] == nil {
		return 0
	}
	return m.kv2[path].current
}

// KV1 returns the keys of a KV v1 mount, sorted.
func (s *Server) KV1(ns, mountPath string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mounts[mountKey(ns, mountPath)]
	if m == nil {
		return nil
	}
	keys := make([]string, 0, len(m.kv1))
	for k := range m.kv1 {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mountKey(ns, path string) string {
	return strings.Trim(ns, "/") + "\x00" + strings.Trim(path, "/") + "/"
}

func (s *Server) issueLocked(o TokenOptions, path string, meta map[string]string) *token {
	now := s.now()
	s.accessorSeq++
	tk := &token{
		id:        "hvs." + randomHex(16),
		accessor:  fmt.Sprintf("acc-%d-%s", s.accessorSeq, randomHex(4)),
		policies:  append([]string{"default"}, o.Policies...),
		created:   now,
		ttl:       o.TTL,
		renewable: o.Renewable,
		path:      path,
		meta:      meta,
	}
	if o.TTL > 0 {
		tk.expires = now.Add(o.TTL)
	}
	if o.MaxTTL > 0 {
		tk.maxExpire = now.Add(o.MaxTTL)
	}
	s.tokens[tk.id] = tk
	return tk
}

func (s *Server) validTokenLocked(id string) *token {
	tk := s.tokens[id]
	if tk == nil || tk.revoked {
		return nil
	}
	if !tk.expires.IsZero() && !s.now().Before(tk.expires) {
		return nil
	}
	return tk
}

// --- HTTP ---

type request struct {
	w    http.ResponseWriter
	r    *http.Request
	ns   string
	path string // after /v1/, without a trailing slash
	tok  *token
	body map[string]any
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)

	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeErrors(w, http.StatusNotFound)
		return
	}
	req := &request{w: w, r: r, ns: strings.Trim(r.Header.Get("X-Vault-Namespace"), "/"),
		path: strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.UseNumber()
			if err := dec.Decode(&req.body); err != nil {
				writeErrors(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
				return
			}
		}
	}

	switch req.path {
	case "sys/seal-status":
		writeJSON(w, http.StatusOK, map[string]any{"type": "shamir", "initialized": true, "sealed": s.sealed,
			"t": 1, "n": 1, "progress": 0, "nonce": "", "version": "1.17.0-vaulttest", "build_date": "",
			"migration": false, "recovery_seal": false, "storage_type": "inmem"})
		return
	case "sys/health":
		code := http.StatusOK
		if s.sealed {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"initialized": true, "sealed": s.sealed, "standby": false,
			"version": "1.17.0-vaulttest", "server_time_utc": s.now().Unix()})
		return
	}
	if s.sealed {
		writeErrors(w, http.StatusServiceUnavailable, errSealed)
		return
	}

	// Logins need no token.
	if strings.HasPrefix(req.path, "auth/") && strings.HasSuffix(req.path, "/login") {
		mnt := strings.TrimSuffix(strings.TrimPrefix(req.path, "auth/"), "/login")
		switch s.authMounts[mnt] {
		case "approle":
			s.approleLogin(req, mnt)
			return
		case "kubernetes":
			s.kubernetesLogin(req, mnt)
			return
		}
	}

	id := r.Header.Get("X-Vault-Token")
	if id == "" {
		writeErrors(w, http.StatusForbidden, errPermissionDenied)
		return
	}
	req.tok = s.validTokenLocked(id)
	if req.tok == nil {
		writeErrors(w, http.StatusForbidden, errInvalidToken)
		return
	}

	switch {
	case req.path == "auth/token/lookup-self":
		if !s.allowedLocked(req.tok, req.path, "read") {
			writeErrors(w, http.StatusForbidden, errPermissionDenied)
			return
		}
		s.lookupSelf(req)
		return
	case req.path == "auth/token/renew-self":
		if !s.allowedLocked(req.tok, req.path, "update") {
			writeErrors(w, http.StatusForbidden, errPermissionDenied)
			return
		}
		s.renewSelf(req)
		return
	case req.path == "auth/token/revoke-self":
		req.tok.revoked = true
		w.WriteHeader(http.StatusNoContent)
		return
	case strings.HasPrefix(req.path, "sys/policies/acl/"), strings.HasPrefix(req.path, "sys/policy/"),
		strings.HasPrefix(req.path, "sys/mounts/"), req.path == "auth/token/create":
		if !req.tok.root {
			writeErrors(w, http.StatusForbidden, errPermissionDenied)
			return
		}
		s.sys(req)
		return
	case strings.HasPrefix(req.path, "sys/internal/ui/mounts/"):
		s.uiMount(req, strings.TrimPrefix(req.path, "sys/internal/ui/mounts/"))
		return
	}

	_, m, rest := s.findMountLocked(req.ns, req.path)
	capability := capabilityFor(r.Method)
	if m != nil && m.version == 2 && capability == "update" && (strings.HasPrefix(rest, "data/") || strings.HasPrefix(rest, "metadata/")) {
		// Vault asks for create when the secret does not exist yet.
		p := rest[strings.Index(rest, "/")+1:]
		if m.kv2[p] == nil {
			capability = "create"
		}
	}
	if !s.allowedLocked(req.tok, req.path, capability) {
		writeErrors(w, http.StatusForbidden, errPermissionDenied)
		return
	}
	if m == nil {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", req.path))
		return
	}
	if m.version == 1 {
		s.kv1(req, m, rest)
		return
	}
	s.kv2(req, m, rest)
}

func capabilityFor(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "read"
	case http.MethodDelete:
		return "delete"
	case "LIST":
		return "list"
	}
	return "update"
}

// findMountLocked returns the longest mount that prefixes path in ns, and
// the rest of the path below it.
func (s *Server) findMountLocked(ns, path string) (string, *mount, string) {
	best, bestKey := "", ""
	for k := range s.mounts {
		kns, mp, _ := strings.Cut(k, "\x00")
		if kns != ns {
			continue
		}
		if strings.HasPrefix(path+"/", mp) && len(mp) > len(best) {
			best, bestKey = mp, k
		}
	}
	if bestKey == "" {
		return "", nil, ""
	}
	rest := ""
	if len(path) > len(best) {
		rest = path[len(best):]
	}
	return best, s.mounts[bestKey], rest
}

// allowedLocked applies the token's policies to path like Vault's ACL: in
// each policy the most specific matching rule counts; capabilities of the
// policies add up; deny wins.
func (s *Server) allowedLocked(tk *token, path, capability string) bool {
	if tk.root {
		return true
	}
	caps := map[string]bool{}
	for _, name := range tk.policies {
		rules := s.policies[name]
		bestLen, bestExact := -1, false
		var best []string
		for pattern, c := range rules {
			ok, exact := matchPattern(pattern, path)
			if !ok {
				continue
			}
			l := len(pattern)
			if (exact && !bestExact) || (exact == bestExact && l > bestLen) {
				best, bestLen, bestExact = c, l, exact
			}
		}
		for _, c := range best {
			caps[c] = true
		}
	}
	if caps["deny"] {
		return false
	}
	return caps[capability]
}

// matchPattern matches a policy path: exact, a trailing "*" prefix, "+"
// for one segment.
func matchPattern(pattern, path string) (match, exact bool) {
	glob := strings.HasSuffix(pattern, "*")
	p := strings.TrimSuffix(pattern, "*")
	ps := strings.Split(p, "/")
	xs := strings.Split(path, "/")
	for i, seg := range ps {
		last := i == len(ps)-1
		if i >= len(xs) {
			return false, false
		}
		switch {
		case seg == "+":
			continue
		case last && glob:
			if !strings.HasPrefix(xs[i], seg) {
				return false, false
			}
		case seg != xs[i]:
			return false, false
		}
	}
	if glob {
		return true, false
	}
	return len(ps) == len(xs), true
}

func (s *Server) uiMount(req *request, path string) {
	mp, m, _ := s.findMountLocked(req.ns, strings.Trim(path, "/"))
	// Vault answers 403 both for a path under no mount and for a mount the
	// token has no capability under, so the endpoint cannot list mounts.
	if m == nil || !s.anyCapabilityUnderLocked(req.tok, mp) {
		writeErrors(req.w, http.StatusForbidden, errPermissionDenied)
		return
	}
	var options any
	if m.version == 2 {
		options = map[string]any{"version": "2"}
	}
	writeData(req.w, http.StatusOK, map[string]any{
		"type": "kv", "path": mp, "options": options, "description": "", "local": false,
		"seal_wrap": false, "external_entropy_access": false, "accessor": "kv_" + randomHex(4),
		"uuid": randomUUID(), "config": map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
	})
}

func (s *Server) anyCapabilityUnderLocked(tk *token, mountPath string) bool {
	if tk.root {
		return true
	}
	for _, name := range tk.policies {
		for pattern, caps := range s.policies[name] {
			if strings.HasPrefix(pattern, mountPath) || strings.HasPrefix(mountPath, strings.TrimSuffix(pattern, "*")) {
				for _, c := range caps {
					if c != "deny" {
						return true
					}
				}
			}
		}
	}
	return false
}

// sys serves the root-only endpoints tests use to set a server up the way
// they would set up a real Vault: ACL policies in JSON form, token
// creation, and KV mounts.
func (s *Server) sys(req *request) {
	w, r := req.w, req.r
	switch {
	case strings.HasPrefix(req.path, "sys/policies/acl/") || strings.HasPrefix(req.path, "sys/policy/"):
		name := req.path[strings.LastIndex(req.path, "/")+1:]
		if r.Method == http.MethodDelete {
			delete(s.policies, name)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		text, _ := req.body["policy"].(string)
		var doc struct {
			Path map[string]struct {
				Capabilities []string `json:"capabilities"`
			} `json:"path"`
		}
		if err := json.Unmarshal([]byte(text), &doc); err != nil {
			writeErrors(w, http.StatusBadRequest, "failed to parse policy: vaulttest reads JSON policies only: "+err.Error())
			return
		}
		rules := map[string][]string{}
		for p, r := range doc.Path {
			rules[p] = r.Capabilities
		}
		s.policies[name] = rules
		w.WriteHeader(http.StatusNoContent)
	case req.path == "auth/token/create":
		var o TokenOptions
		if ps, ok := req.body["policies"].([]any); ok {
			for _, p := range ps {
				if str, ok := p.(string); ok && str != "default" {
					o.Policies = append(o.Policies, str)
				}
			}
		}
		if v, ok := req.body["ttl"]; ok {
			o.TTL, _ = parseDuration(v)
		}
		if v, ok := req.body["explicit_max_ttl"]; ok {
			o.MaxTTL, _ = parseDuration(v)
		}
		o.Renewable = true
		if v, ok := req.body["renewable"].(bool); ok {
			o.Renewable = v
		}
		if o.TTL == 0 {
			o.TTL = 768 * time.Hour // Vault's default max lease TTL
		}
		s.writeAuth(w, s.issueLocked(o, "auth/token/create", nil), nil)
	case strings.HasPrefix(req.path, "sys/mounts/"):
		p := strings.TrimPrefix(req.path, "sys/mounts/")
		key := mountKey(req.ns, p)
		switch r.Method {
		case http.MethodDelete:
			delete(s.mounts, key)
			w.WriteHeader(http.StatusNoContent)
		case http.MethodPost, http.MethodPut:
			typ, _ := req.body["type"].(string)
			version := 1
			if opts, ok := req.body["options"].(map[string]any); ok {
				if v, _ := opts["version"].(string); v == "2" {
					version = 2
				}
			}
			switch typ {
			case "kv-v2":
				version = 2
			case "kv", "generic":
			default:
				writeErrors(w, http.StatusBadRequest, fmt.Sprintf("plugin not found in the catalog: %s", typ))
				return
			}
			if _, ok := s.mounts[key]; ok {
				writeErrors(w, http.StatusBadRequest, fmt.Sprintf("path is already in use at %s/", strings.Trim(p, "/")))
				return
			}
			s.mounts[key] = &mount{version: version, maxVersions: 10,
				kv1: map[string]map[string]any{}, kv2: map[string]*kvSecret{}}
			w.WriteHeader(http.StatusNoContent)
		default:
			writeErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
		}
	}
}

// --- tokens and logins ---

func (s *Server) tokenTTLLocked(tk *token) int64 {
	if tk.expires.IsZero() {
		return 0
	}
	return int64(tk.expires.Sub(s.now()).Round(time.Second) / time.Second)
}

func (s *Server) lookupSelf(req *request) {
	tk := req.tok
	var expire any
	if !tk.expires.IsZero() {
		expire = tk.expires.UTC().Format(time.RFC3339Nano)
	}
	typ := "service"
	writeData(req.w, http.StatusOK, map[string]any{
		"accessor": tk.accessor, "creation_time": tk.created.Unix(), "creation_ttl": int64(tk.ttl / time.Second),
		"display_name": "token", "entity_id": "", "expire_time": expire, "explicit_max_ttl": 0,
		"id": tk.id, "issue_time": tk.created.UTC().Format(time.RFC3339Nano), "meta": tk.meta,
		"num_uses": 0, "orphan": true, "path": tk.path, "policies": tk.policies,
		"renewable": tk.renewable, "ttl": s.tokenTTLLocked(tk), "type": typ,
	})
}

func (s *Server) renewSelf(req *request) {
	tk := req.tok
	if !tk.renewable || tk.expires.IsZero() {
		writeErrors(req.w, http.StatusBadRequest, "lease is not renewable")
		return
	}
	inc := tk.ttl
	if v, ok := req.body["increment"]; ok {
		if d, err := parseDuration(v); err == nil && d > 0 {
			inc = d
		}
	}
	exp := s.now().Add(inc)
	if !tk.maxExpire.IsZero() && exp.After(tk.maxExpire) {
		exp = tk.maxExpire
	}
	tk.expires = exp
	s.renewals++
	s.writeAuth(req.w, tk, nil)
}

func (s *Server) writeAuth(w http.ResponseWriter, tk *token, warnings []string) {
	writeJSON(w, http.StatusOK, map[string]any{
		"request_id": randomUUID(), "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": nil, "wrap_info": nil, "warnings": warnings,
		"auth": map[string]any{
			"client_token": tk.id, "accessor": tk.accessor, "policies": tk.policies,
			"token_policies": tk.policies, "metadata": tk.meta, "lease_duration": s.tokenTTLLocked(tk),
			"renewable": tk.renewable, "entity_id": "", "token_type": "service", "orphan": true,
		},
	})
}

func (s *Server) approleLogin(req *request, mnt string) {
	roleID, _ := req.body["role_id"].(string)
	secretID, _ := req.body["secret_id"].(string)
	if roleID == "" {
		writeErrors(req.w, http.StatusBadRequest, "missing role_id")
		return
	}
	ar := s.approles[roleID]
	if ar == nil || ar.secretID != secretID {
		writeErrors(req.w, http.StatusBadRequest, "invalid role or secret ID")
		return
	}
	s.logins++
	tk := s.issueLocked(ar.opts.Token, "auth/"+mnt+"/login", map[string]string{"role_name": ar.name})
	s.writeAuth(req.w, tk, nil)
}

func (s *Server) kubernetesLogin(req *request, mnt string) {
	role, _ := req.body["role"].(string)
	jwt, _ := req.body["jwt"].(string)
	if role == "" {
		writeErrors(req.w, http.StatusBadRequest, "missing role")
		return
	}
	if jwt == "" {
		writeErrors(req.w, http.StatusBadRequest, "missing jwt")
		return
	}
	kr := s.k8sRoles[role]
	if kr == nil {
		writeErrors(req.w, http.StatusBadRequest, fmt.Sprintf("invalid role name %q", role))
		return
	}
	if kr.JWT != jwt {
		writeErrors(req.w, http.StatusForbidden, errPermissionDenied)
		return
	}
	s.logins++
	tk := s.issueLocked(kr.Token, "auth/"+mnt+"/login", map[string]string{"role": role})
	s.writeAuth(req.w, tk, nil)
}

// --- KV v1 ---

func (s *Server) kv1(req *request, m *mount, p string) {
	switch req.r.Method {
	case http.MethodGet:
		d, ok := m.kv1[p]
		if !ok {
			writeErrors(req.w, http.StatusNotFound)
			return
		}
		writeData(req.w, http.StatusOK, d)
	case http.MethodPost, http.MethodPut:
		m.kv1[p] = req.body
		req.w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		delete(m.kv1, p)
		req.w.WriteHeader(http.StatusNoContent)
	default:
		writeErrors(req.w, http.StatusMethodNotAllowed, "unsupported operation")
	}
}

// --- KV v2 ---

func (s *Server) kv2(req *request, m *mount, rest string) {
	kind, p, _ := strings.Cut(rest, "/")
	if p == "" && kind != "config" {
		writeErrors(req.w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", req.path))
		return
	}
	switch kind {
	case "data":
		switch req.r.Method {
		case http.MethodGet:
			s.kv2Read(req, m, p)
		case http.MethodPost, http.MethodPut:
			s.kv2Write(req, m, p)
		case http.MethodDelete:
			sec := m.kv2[p]
			if sec != nil && sec.versions[sec.current] != nil && sec.versions[sec.current].deleted.IsZero() {
				sec.versions[sec.current].deleted = s.now()
			}
			req.w.WriteHeader(http.StatusNoContent)
		default:
			writeErrors(req.w, http.StatusMethodNotAllowed, "unsupported operation")
		}
	case "metadata":
		switch req.r.Method {
		case http.MethodGet:
			s.kv2ReadMetadata(req, m, p)
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			s.kv2WriteMetadata(req, m, p)
		case http.MethodDelete:
			delete(m.kv2, p)
			req.w.WriteHeader(http.StatusNoContent)
		default:
			writeErrors(req.w, http.StatusMethodNotAllowed, "unsupported operation")
		}
	case "delete", "undelete", "destroy":
		if req.r.Method != http.MethodPost && req.r.Method != http.MethodPut {
			writeErrors(req.w, http.StatusMethodNotAllowed, "unsupported operation")
			return
		}
		vs, err := intList(req.body["versions"])
		if err != nil || len(vs) == 0 {
			writeErrors(req.w, http.StatusBadRequest, "no version number provided")
			return
		}
		if sec := m.kv2[p]; sec != nil {
			for _, n := range vs {
				v := sec.versions[n]
				if v == nil {
					continue
				}
				switch kind {
				case "delete":
					if v.deleted.IsZero() {
						v.deleted = s.now()
					}
				case "undelete":
					if !v.destroyed {
						v.deleted = time.Time{}
					}
				case "destroy":
					v.destroyed, v.data = true, nil
				}
			}
		}
		req.w.WriteHeader(http.StatusNoContent)
	default:
		writeErrors(req.w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", req.path))
	}
}

func (s *Server) versionMeta(sec *kvSecret, n int, v *kvVersion) map[string]any {
	del := ""
	if !v.deleted.IsZero() {
		del = v.deleted.UTC().Format(time.RFC3339Nano)
	}
	var cm any
	if sec.customMetadata != nil {
		cm = sec.customMetadata
	}
	return map[string]any{"created_time": v.created.UTC().Format(time.RFC3339Nano), "custom_metadata": cm,
		"deletion_time": del, "destroyed": v.destroyed, "version": n}
}

func (s *Server) kv2Read(req *request, m *mount, p string) {
	sec := m.kv2[p]
	if sec == nil || sec.current == 0 {
		writeErrors(req.w, http.StatusNotFound)
		return
	}
	n := sec.current
	if q := req.r.URL.Query().Get("version"); q != "" {
		x, err := strconv.Atoi(q)
		if err != nil {
			writeErrors(req.w, http.StatusBadRequest, "invalid version")
			return
		}
		if x > 0 {
			n = x
		}
	}
	v := sec.versions[n]
	if v == nil {
		writeErrors(req.w, http.StatusNotFound)
		return
	}
	if v.destroyed || !v.deleted.IsZero() {
		// Vault answers 404 and still shows the version's metadata.
		writeData(req.w, http.StatusNotFound, map[string]any{"data": nil, "metadata": s.versionMeta(sec, n, v)})
		return
	}
	writeData(req.w, http.StatusOK, map[string]any{"data": v.data, "metadata": s.versionMeta(sec, n, v)})
}

func (s *Server) kv2Write(req *request, m *mount, p string) {
	data, ok := req.body["data"].(map[string]any)
	if !ok {
		writeErrors(req.w, http.StatusBadRequest, "no data provided")
		return
	}
	sec := m.kv2[p]
	current := 0
	if sec != nil {
		current = sec.current
	}
	opts, _ := req.body["options"].(map[string]any)
	casRaw, hasCAS := opts["cas"]
	if !hasCAS && m.casRequired {
		writeErrors(req.w, http.StatusBadRequest, errCASRequired)
		return
	}
	if hasCAS {
		cas, err := toInt(casRaw)
		if err != nil {
			writeErrors(req.w, http.StatusBadRequest, "invalid cas parameter")
			return
		}
		if cas != current {
			writeErrors(req.w, http.StatusBadRequest, errCASMismatch)
			return
		}
	}
	now := s.now()
	if sec == nil {
		sec = &kvSecret{created: now, versions: map[int]*kvVersion{}}
		m.kv2[p] = sec
	}
	sec.current++
	sec.updated = now
	v := &kvVersion{data: data, created: now}
	sec.versions[sec.current] = v
	maxV := m.maxVersions
	if sec.maxVersions > 0 {
		maxV = sec.maxVersions
	}
	for n := range sec.versions {
		if maxV > 0 && n <= sec.current-maxV {
			delete(sec.versions, n)
			if n >= sec.oldest {
				sec.oldest = n + 1
			}
		}
	}
	writeData(req.w, http.StatusOK, s.versionMeta(sec, sec.current, v))
}

func (s *Server) kv2ReadMetadata(req *request, m *mount, p string) {
	sec := m.kv2[p]
	if sec == nil {
		writeErrors(req.w, http.StatusNotFound)
		return
	}
	versions := map[string]any{}
	for n, v := range sec.versions {
		vm := s.versionMeta(sec, n, v)
		delete(vm, "custom_metadata")
		delete(vm, "version")
		versions[strconv.Itoa(n)] = vm
	}
	var cm any
	if sec.customMetadata != nil {
		cm = sec.customMetadata
	}
	writeData(req.w, http.StatusOK, map[string]any{
		"cas_required": m.casRequired, "created_time": sec.created.UTC().Format(time.RFC3339Nano),
		"current_version": sec.current, "custom_metadata": cm, "delete_version_after": "0s",
		"max_versions": sec.maxVersions, "oldest_version": sec.oldest,
		"updated_time": sec.updated.UTC().Format(time.RFC3339Nano), "versions": versions,
	})
}

func (s *Server) kv2WriteMetadata(req *request, m *mount, p string) {
	sec := m.kv2[p]
	now := s.now()
	if sec == nil {
		sec = &kvSecret{created: now, updated: now, versions: map[int]*kvVersion{}}
		m.kv2[p] = sec
	}
	if raw, ok := req.body["custom_metadata"]; ok {
		cm, ok := raw.(map[string]any)
		if !ok && raw != nil {
			writeErrors(req.w, http.StatusBadRequest, "custom_metadata must be a map of strings")
			return
		}
		out := map[string]string{}
		if req.r.Method == http.MethodPatch && sec.customMetadata != nil {
			for k, v := range sec.customMetadata {
				out[k] = v
			}
		}
		for k, v := range cm {
			str, ok := v.(string)
			if !ok {
				if v == nil && req.r.Method == http.MethodPatch {
					delete(out, k)
					continue
				}
				writeErrors(req.w, http.StatusBadRequest, fmt.Sprintf("custom_metadata value for key %q must be a string", k))
				return
			}
			if len(k) > 128 || len(str) > 512 {
				writeErrors(req.w, http.StatusBadRequest, "custom_metadata keys are limited to 128 bytes and values to 512 bytes")
				return
			}
			out[k] = str
		}
		if len(out) > 64 {
			writeErrors(req.w, http.StatusBadRequest, "custom_metadata may hold at most 64 keys")
			return
		}
		sec.customMetadata = out
	}
	if raw, ok := req.body["max_versions"]; ok {
		if n, err := toInt(raw); err == nil {
			sec.maxVersions = n
		}
	}
	req.w.WriteHeader(http.StatusNoContent)
}

// --- helpers ---

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeData(w http.ResponseWriter, code int, data any) {
	writeJSON(w, code, map[string]any{"request_id": randomUUID(), "lease_id": "", "renewable": false,
		"lease_duration": 0, "data": data, "wrap_info": nil, "warnings": nil, "auth": nil})
}

func writeErrors(w http.ResponseWriter, code int, errs ...string) {
	if errs == nil {
		errs = []string{}
	}
	writeJSON(w, code, map[string]any{"errors": errs})
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return int(n), err
	case float64:
		return int(x), nil
	case string:
		return strconv.Atoi(x)
	}
	return 0, errors.New("not a number")
}

func intList(v any) ([]int, error) {
	switch x := v.(type) {
	case []any:
		out := make([]int, 0, len(x))
		for _, e := range x {
			n, err := toInt(e)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	case string:
		var out []int
		for _, f := range strings.Split(x, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	}
	n, err := toInt(v)
	return []int{n}, err
}

func parseDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case string:
		if d, err := time.ParseDuration(x); err == nil {
			return d, nil
		}
		n, err := strconv.Atoi(x)
		return time.Duration(n) * time.Second, err
	default:
		n, err := toInt(v)
		return time.Duration(n) * time.Second, err
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
