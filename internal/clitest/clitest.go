// Package clitest builds the rotator binary once per test binary, for the
// tests that run it as a process (as a user and a CronJob would).
package clitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rotator/rotator/internal/pgtest"
)

// Main builds ./cmd/rotator from pkgDir (the path of cmd/rotator relative
// to the test's package) into a temporary directory, stores its path in
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
	args := append([]string{"build", "-trimpath"}, buildArgs...)
	args = append(args, "-o", *binary, pkgDir)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rotator: %v\n%s", err, out)
		return 1
	}
	return pgtest.Main(m)
}
