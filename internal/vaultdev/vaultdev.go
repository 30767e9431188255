// Package vaultdev runs a real Vault, `vault server -dev`, on a loopback
// port for tests of code that talks to Vault, and a fault proxy to put in
// front of it.
//
// The binary is VAULT_BIN, else `vault` on PATH, else the one
// scripts/build-vault.sh builds from the Go module proxy into
// ${XDG_CACHE_HOME:-$HOME/.cache}/rotator/vault-1.21.4/vault (`make vault`).
// When there is none, the test fails and says so; it never passes silently.
//
//	func TestMain(m *testing.M) { os.Exit(vaultdev.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		v := vaultdev.Shared(t)      // one dev server for the test binary
//		client := v.Client(t)        // root token
//		...
//	}
//
// New starts a server of the test's own, for tests that seal it or need a
// TLS listener (Options.TLS: `-dev-tls`, a CA of its own). A dev server
// keeps everything in memory, starts unsealed with a KV v2 mount at secret/
// and prints its unseal key, which Seal and Unseal use.
package vaultdev

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rotator/rotator/internal/testproc"
)

// Version is the Vault release scripts/build-vault.sh builds.
const Version = "1.21.4"

// HowToGet says how to get a vault binary on a machine.
const HowToGet = "install Vault from HashiCorp's packages (https://developer.hashicorp.com/vault/install) so that `vault` is on PATH, " +
	"set VAULT_BIN to a vault binary, or build one from the Go module proxy with `make vault` (scripts/build-vault.sh, about 15 minutes once)"

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 60 * time.Second

// Options change how Start runs the server.
type Options struct {
	// TLS runs `-dev-tls`: an HTTPS listener with a certificate signed by
	// a CA of the server's own, written to CAFile. The certificate names
	// localhost, 127.0.0.1 and each of TLSNames.
	TLS      bool
	TLSNames []string
}

// Server is a running `vault server -dev`.
type Server struct {
	// Addr is the server's address: http(s)://127.0.0.1:PORT.
	Addr string
	// RootToken is the dev server's root token (random per server).
	RootToken string
	// UnsealKey is the dev server's single unseal key.
	UnsealKey string
	// CAFile is the PEM file of the CA that signed the TLS certificate
	// (Options.TLS only).
	CAFile string
	// Port is the loopback port it listens on.
	Port int

	proc *testproc.Process
}

// CacheBinary is where scripts/build-vault.sh puts the binary it builds.
func CacheBinary() string {
	if d := os.Getenv("VAULT_CACHE_DIR"); d != "" {
		return filepath.Join(d, "vault")
	}
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "rotator", "vault-"+Version, "vault")
}

// Binary finds the vault binary: VAULT_BIN, `vault` on PATH, the cached
// build.
func Binary() (string, error) {
	if b := os.Getenv("VAULT_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("vaultdev: VAULT_BIN=%s: %w", b, err)
		}
		return b, nil
	}
	if b, err := exec.LookPath("vault"); err == nil {
		return b, nil
	}
	if b := CacheBinary(); b != "" {
		if fi, err := os.Stat(b); err == nil && fi.Mode()&0o111 != 0 {
			return b, nil
		}
	}
	return "", fmt.Errorf("vaultdev: no vault binary (not in VAULT_BIN, not on PATH, not at %s): %s", CacheBinary(), HowToGet)
}

// Start runs `vault server -dev` on a free loopback port and waits until
// it is unsealed and active. Close stops it.
func Start(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port may be taken between asking and binding
		s, err := start(bin, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

var unsealKeyLine = regexp.MustCompile(`(?m)^Unseal Key: (\S+)\s*$`)

func start(bin string, opts Options) (*Server, error) {
	port, err := testproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("vaultdev: free port: %w", err)
	}
	home, err := os.MkdirTemp("", "vaultdev-")
	if err != nil {
		return nil, fmt.Errorf("vaultdev: %w", err)
	}
	s := &Server{Port: port, RootToken: "dev-" + rand.Text()} // a custom id may not start with "hvs."
	args := []string{"server", "-dev",
		"-dev-listen-address=127.0.0.1:" + strconv.Itoa(port),
		"-dev-root-token-id=" + s.RootToken,
		"-dev-no-store-token",
		"-log-level=warn",
	}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		certDir := filepath.Join(home, "tls")
		if err := os.MkdirAll(certDir, 0o700); err != nil {
			return nil, fmt.Errorf("vaultdev: %w", err)
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		for _, n := range opts.TLSNames {
			args = append(args, "-dev-tls-san="+n)
		}
		s.CAFile = filepath.Join(certDir, "vault-ca.pem")
	}
	s.Addr = scheme + "://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, args...)
	cmd.Dir = home
	// Nothing from the caller's VAULT_* settings (VAULT_ADDR of another
	// Vault, a token helper) reaches the dev server; HOME is its own.
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	s.proc, err = testproc.Start("vault server -dev", cmd)
	if err != nil {
		_ = os.RemoveAll(home)
		return nil, fmt.Errorf("vaultdev: %w", err)
	}
	go func() {
		<-s.proc.Exited()
		_ = os.RemoveAll(home)
	}()
	if err := s.waitReady(startTimeout); err != nil {
		_ = s.Close()
		return nil, err
	}
	m := unsealKeyLine.FindStringSubmatch(s.proc.Output())
	if m == nil {
		_ = s.Close()
		return nil, fmt.Errorf("vaultdev: no \"Unseal Key:\" line in the dev server's output:\n%s", s.proc.Tail(2000))
	}
	s.UnsealKey = m[1]
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("vaultdev: vault exited before answering on port %d:\n%s", s.Port, s.proc.Tail(2000))
		default:
		}
		if s.CAFile == "" || fileExists(s.CAFile) {
			c, err := s.newClient()
			if err == nil {
				var h *api.HealthResponse
				h, err = c.Sys().Health()
				if err == nil && h.Initialized && !h.Sealed && !h.Standby &&
					unsealKeyLine.MatchString(s.proc.Output()) {
					return nil
				}
			}
			lastErr = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vaultdev: vault did not become active on %s within %s: %v\noutput: %s",
				s.Addr, timeout, lastErr, s.proc.Tail(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (s *Server) newClient() (*api.Client, error) {
	conf := api.DefaultConfig()
	if conf.Error != nil {
		return nil, conf.Error
	}
	conf.Address = s.Addr
	conf.MaxRetries = 0
	if s.CAFile != "" {
		if err := conf.ConfigureTLS(&api.TLSConfig{CACert: s.CAFile}); err != nil {
			return nil, err
		}
	}
	c, err := api.NewClient(conf)
	if err != nil {
		return nil, err
	}
	// NewClient reads VAULT_TOKEN and VAULT_NAMESPACE; this client talks
	// to this server only.
	c.SetToken(s.RootToken)
	c.ClearNamespace()
	return c, nil
}

// Client returns an API client with the root token.
func (s *Server) Client(t testing.TB) *api.Client {
	t.Helper()
	c, err := s.newClient()
	if err != nil {
		t.Fatalf("vaultdev: client: %v", err)
	}
	return c
}

// Seal seals the server (vault operator seal).
func (s *Server) Seal(t testing.TB) {
	t.Helper()
	if err := s.Client(t).Sys().Seal(); err != nil {
		t.Fatalf("vaultdev: seal: %v", err)
	}
}

// Unseal unseals the server with its unseal key (vault operator unseal)
// and waits until it is active again.
func (s *Server) Unseal(t testing.TB) {
	t.Helper()
	st, err := s.Client(t).Sys().Unseal(s.UnsealKey)
	if err != nil {
		t.Fatalf("vaultdev: unseal: %v", err)
	}
	if st.Sealed {
		t.Fatalf("vaultdev: still sealed after the unseal key")
	}
	if err := s.waitReady(startTimeout); err != nil {
		t.Fatalf("%v", err)
	}
}

// Close kills the server and waits for it to exit. It is safe to call
// more than once.
func (s *Server) Close() error {
	if err := s.proc.Close(); err != nil {
		return fmt.Errorf("vaultdev: %w", err)
	}
	return nil
}

// Output returns what the server printed so far, for failure messages.
func (s *Server) Output() string { return s.proc.Output() }

// New starts a server of the test's own and kills it at cleanup. It fails
// the test, saying how to get Vault, when it cannot start one.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Logf("%v", err)
		}
	})
	return s
}

// shared is the server of one test binary (one package under test).
var shared struct {
	once   sync.Once
	server *Server
	err    error
}

// Shared returns the test binary's server, started on first use. Use Main
// in TestMain to stop it after the tests. Tests sharing it must use paths,
// policy and mount names of their own, and must not seal it.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.server, shared.err = Start(Options{}) })
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.server
}

// Main runs the tests of a package and stops the shared server after them:
//
//	func TestMain(m *testing.M) { os.Exit(vaultdev.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.server != nil {
		if err := shared.server.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// WritePolicy writes an ACL policy (HCL or JSON text) named name and
// deletes it at cleanup.
func (s *Server) WritePolicy(t testing.TB, name, rules string) {
	t.Helper()
	c := s.Client(t)
	if err := c.Sys().PutPolicy(name, rules); err != nil {
		t.Fatalf("vaultdev: write policy %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Sys().DeletePolicy(name) })
}

// TokenOptions describe a token CreateToken makes.
type TokenOptions struct {
	Policies  []string
	TTL       time.Duration // 0: the mount's default (32 days in dev mode)
	MaxTTL    time.Duration // explicit_max_ttl; 0: none
	Renewable bool
	// NoDefaultPolicy leaves out the default policy (lookup-self,
	// renew-self, revoke-self...).
	NoDefaultPolicy bool
}

// CreateToken creates a token with the root token.
func (s *Server) CreateToken(t testing.TB, o TokenOptions) string {
	t.Helper()
	renewable := o.Renewable
	req := &api.TokenCreateRequest{Policies: o.Policies, Renewable: &renewable, NoDefaultPolicy: o.NoDefaultPolicy}
	if o.TTL > 0 {
		req.TTL = o.TTL.String()
	}
	if o.MaxTTL > 0 {
		req.ExplicitMaxTTL = o.MaxTTL.String()
	}
	sec, err := s.Client(t).Auth().Token().Create(req)
	if err != nil {
		t.Fatalf("vaultdev: create token: %v", err)
	}
	return sec.Auth.ClientToken
}
