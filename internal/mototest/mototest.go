// Package mototest runs moto_server, the real Secrets Manager API protocol
// on a loopback port, for tests of code that talks to AWS.
//
// A test that needs it calls New (a server of its own, killed at cleanup) or
// Shared (one server for the test binary, killed by Main). When moto_server
// is not installed the test fails and says how to install it; it never
// passes silently.
//
//	func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		srv := mototest.Shared(t)
//		client := secretsmanager.NewFromConfig(srv.AWSConfig())
//		...
//	}
//
// The AWS configuration a Server hands out carries dummy static
// credentials of its own: nothing is read from or written to the
// environment, so tests in other packages are not affected.
package mototest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/rotator/rotator/internal/readagain"
	"github.com/rotator/rotator/internal/testproc"
)

// HowToInstall says how to get moto_server on a machine.
const HowToInstall = `install it with: pip install 'moto[server]' (Python 3), and make sure moto_server is on PATH`

// Region is the region of the configuration AWSConfig returns.
const Region = "us-east-1"

// Binary is the program Start runs, looked up on PATH.
const Binary = "moto_server"

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 60 * time.Second

// Server is a running moto_server.
type Server struct {
	// URL is the server's base URL: http://127.0.0.1:PORT.
	URL string
	// Port is the loopback port it listens on.
	Port int

	proc *testproc.Process
}

// Start runs moto_server on a free loopback port and waits until it answers
// HTTP requests. Close stops it.
func Start() (*Server, error) { return StartWith(Options{}) }

// Options change how a server is started.
type Options struct {
	// Env is added to the server's environment (NAME=value): moto reads
	// its settings from there, such as INITIAL_NO_AUTH_ACTION_COUNT (see
	// StartIAMAuth).
	Env []string
}

// StartWith runs moto_server like Start, with o.
func StartWith(o Options) (*Server, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("mototest: %s not found on PATH: %s", Binary, HowToInstall)
	}
	var lastErr error
	for range 3 { // a free port may be taken between asking and binding
		s, err := start(bin, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin string, o Options) (*Server, error) {
	port, err := testproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("mototest: free port: %w", err)
	}
	s := &Server{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		Port: port,
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	// moto reads no credentials, but keep the child's environment from
	// telling it about a real account either.
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing")
	cmd.Env = append(cmd.Env, o.Env...)
	s.proc, err = testproc.Start(Binary, cmd)
	if err != nil {
		return nil, fmt.Errorf("mototest: %w (%s)", err, HowToInstall)
	}
	if err := s.waitReady(startTimeout); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("mototest: %s exited before answering on port %d: %s\n(%s)",
				Binary, s.Port, s.proc.Tail(2000), HowToInstall)
		default:
		}
		resp, err := client.Get(s.URL + "/moto-api/")
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mototest: %s did not answer on %s within %s: %v\noutput: %s",
				Binary, s.URL, timeout, err, s.proc.Tail(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close kills the server (and anything it started) and waits for it to
// exit. It is safe to call more than once.
func (s *Server) Close() error {
	if err := s.proc.Close(); err != nil {
		return fmt.Errorf("mototest: %w", err)
	}
	return nil
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.proc.Pid() }

// Output returns what the server printed so far, for failure messages.
func (s *Server) Output() string { return s.proc.Output() }

// AWSConfig returns an AWS configuration that talks to the server (see
// Config).
func (s *Server) AWSConfig() aws.Config { return Config(s.URL) }

// Config returns an AWS configuration for a test server at url: region
// us-east-1, dummy static credentials, BaseEndpoint url, and a single
// attempt per request so that failures show at once. It reads nothing from
// the environment or ~/.aws.
func Config(url string) aws.Config {
	return aws.Config{
		Region: Region,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "testing", SecretAccessKey: "testing", Source: "mototest"}, nil
		})),
		BaseEndpoint: aws.String(url),
		Retryer:      closedOnly,
	}
}

// closedOnly is the retryer of Config: one attempt, except that a call
// whose answer was cut by a connection Go's HTTP client closed under it
// (internal/readagain) is sent again, up to twice, so that a test's own
// reads through the SDK do not fail on it. Nothing else is retried: a
// fault a test injects (a refused connection, an error answer, a proxy
// gone) costs one attempt, as it did with RetryMaxAttempts 1.
func closedOnly() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 3
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if readagain.Closed(err) {
				return aws.TrueTernary
			}
			return aws.FalseTernary
		})}
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 10 * time.Millisecond, nil })
	})
}

// Reset drops everything the server holds (moto's /moto-api/reset).
func (s *Server) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/moto-api/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mototest: reset: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("mototest: reset: %s", resp.Status)
	}
	return nil
}

// New starts a server of the test's own and kills it at cleanup. It fails
// the test, saying how to install moto_server, when it cannot start one.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
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
// in TestMain to stop it after the tests. Tests sharing it must use names
// of their own (or call Reset with care: other tests may be running).
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.server, shared.err = Start() })
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.server
}

// Main runs the tests of a package and stops the shared server after them:
//
//	func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.server != nil {
		if err := shared.server.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}
