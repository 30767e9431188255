// Package deploy_test checks what deploy/ ships: the Kubernetes manifests
// decode strictly into the Kubernetes API types and say what the runbook
// promises; the Vault and IAM policies grant what the stores use; and the
// Postgres grants are enough for `rotator init` and `rotator run`, by
// running the built binary as a role that has only them.
package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rotator/rotator/internal/pgtest"
)

// stampedVersion is stamped into the test binary the way the Dockerfile
// and the Makefile do it.
const stampedVersion = "v0.0.0-deploytest"

// binary is the rotator CLI, built once (in TestMain) like the image does.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rotator-deploy-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rotator")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+stampedVersion, "-o", binary, "../cmd/rotator")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rotator: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
