// Package deploy_test checks what deploy/ ships: the Kubernetes manifests
// decode strictly into the Kubernetes API types and say what the runbook
// promises; the Vault and IAM policies grant what the stores use; and the
// Postgres grants are enough for `rotator init` and `rotator run`, by
// running the built binary as a role that has only them.
package deploy_test

import (
	"os"
	"testing"

	"github.com/rotator/rotator/internal/clitest"
)

// stampedVersion is stamped into the test binary the way the Dockerfile
// and the Makefile do it.
const stampedVersion = "v0.0.0-deploytest"

// binary is the rotator CLI, built once (in TestMain) like the image does.
var binary string

func TestMain(m *testing.M) {
	os.Exit(clitest.Main(m, "../cmd/rotator", &binary, "-ldflags", "-s -w -X main.version="+stampedVersion))
}
