package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// No Docker engine runs the tests, so the Dockerfile is read: two stages, a
// static build with the version stamped the way TestVersionStamped checks,
// and a distroless runtime as a numeric non-root user. .dockerignore keeps
// what the build needs.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	require.NoError(t, err)
	src := strings.ReplaceAll(string(data), "\\\n", " ")
	var froms []string
	var lastStage []string
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "FROM ") {
			froms = append(froms, l)
			lastStage = nil
		}
		lastStage = append(lastStage, l)
	}
	require.Len(t, froms, 2, "a build stage and a runtime stage")
	require.Contains(t, froms[0], "golang:${GO_VERSION}")
	require.Regexp(t, `^FROM gcr\.io/distroless/static-debian\d+:nonroot$`, froms[1])
	require.Contains(t, src, "CGO_ENABLED=0")
	require.Contains(t, src, `-X main.version=${VERSION}`)
	require.Contains(t, src, "./cmd/rotator")
	final := strings.Join(lastStage, "\n")
	require.Regexp(t, `(?m)^USER [1-9]\d*:[1-9]\d*$`, final, "the runtime runs as a numeric non-root user (runAsNonRoot can check it)")
	require.Regexp(t, `(?m)^ENTRYPOINT \["/usr/local/bin/rotator"\]$`, final)
	require.Regexp(t, `(?m)^EXPOSE 9090$`, final)
	require.Regexp(t, `(?m)^COPY --from=build `, final)

	ign, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	require.NoError(t, err)
	for _, l := range strings.Split(string(ign), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "cmd/rotator/main.go", "state/migrations/0001_init.sql", "policy/types.go"} {
			ok, err := filepath.Match(strings.TrimPrefix(l, "**/"), needed)
			require.NoError(t, err)
			require.False(t, ok || strings.HasPrefix(needed, l+"/") || regexp.MustCompile(`^\*\.go$`).MatchString(l), ".dockerignore %q excludes %s", l, needed)
		}
	}
}
