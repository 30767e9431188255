// Package clitest builds the rotator binary once per test binary, for the
// tests that run it as a process (as a user and a CronJob would).
package clitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotator/rotator/internal/pgtest"
)

// Tag is the build tag of the test build.
const Tag = "rotatortest"

// Main builds ./cmd/rotator from pkgDir (the path of cmd/rotator relative
// to the test's package), with the rotatortest build tag (the test-only
// fault injection: ROTATOR_TEST_FAULT, ROTATOR_TEST_SLOW, lease TTLs under
// 5s), into a temporary directory, stores its path in
// *binary, runs the tests with pgtest.Main (so the package's throwaway
// Postgres cluster is stopped after them) and removes the build. Extra
// arguments go to `go build` (e.g. -ldflags). Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(clitest.Main(m, "../cmd/rotator", &binary)) }
func Main(m *testing.M, pkgDir string, binary *string, buildArgs ...string) int {
	dir, err := os.MkdirTemp("", "rotator-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*binary = filepath.Join(dir, "rotator")
	args := append([]string{"build", "-trimpath", "-tags", Tag}, buildArgs...)
	args = append(args, "-o", *binary, pkgDir)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rotator: %v\n%s", err, out)
		return 1
	}
	return pgtest.Main(m)
}

// BuildRelease builds ./cmd/rotator from pkgDir as `make build` does (no
// test tag) into dir and returns the binary's path.
func BuildRelease(pkgDir, dir string) (string, error) {
	bin := filepath.Join(dir, "rotator-release")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkgDir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build rotator: %w\n%s", err, out)
	}
	return bin, nil
}

// Keygen runs `rotator keygen` and returns the new state key.
func Keygen(t testing.TB, binary string) string {
	t.Helper()
	out, err := exec.Command(binary, "keygen").Output()
	if err != nil {
		t.Fatalf("rotator keygen: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// Setup is the world every CLI test starts from: it writes policy to
// dir/policies.yaml, makes a state key with `rotator keygen`, and returns
// the environment for rotator processes run in dir — the test's own
// environment, DATABASE_URL=stateDSN, that key as ROTATOR_STATE_KEY, no
// ROTATOR_POLICIES (policies.yaml in the working directory), JSON logs,
// then extra (later entries win: exec uses the last value of a name).
func Setup(t testing.TB, binary, dir, stateDSN, policy string, extra ...string) []string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatalf("write policies.yaml: %v", err)
	}
	vars := append(os.Environ(),
		"DATABASE_URL="+stateDSN, "ROTATOR_STATE_KEY="+Keygen(t, binary),
		"ROTATOR_POLICIES=", "ROTATOR_LOG_FORMAT=json")
	return append(vars, extra...)
}

// AWSEnv is the environment the AWS store of a rotator process needs to
// reach moto_server (internal/mototest): dummy static credentials, its
// region, and no instance metadata lookups.
var AWSEnv = []string{"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true"}
