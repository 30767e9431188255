package files_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
)

// stressEnv makes the test binary a process that publishes and rolls back
// one path in a loop (TestWritersInTwoProcesses).
const stressEnv = "ROTATOR_FILES_STRESS"

func stressProcess() int {
	dir, path, format := os.Getenv(stressEnv+"_DIR"), os.Getenv(stressEnv+"_PATH"), os.Getenv(stressEnv+"_FORMAT")
	n, _ := strconv.Atoi(os.Getenv(stressEnv + "_N"))
	s, err := files.New(&policy.FilesSpec{Dir: dir, Format: format}, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	if err := stressLoop(context.Background(), s, path, n, os.Getenv(stressEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// stressLoop publishes n versions to path and rolls every third back.
func stressLoop(ctx context.Context, s *files.Store, path string, n int, who string) error {
	for i := range n {
		v := rotation.Version{Number: int64(i + 1), RunID: uuid.NewString(), RotatedAt: time.Now().UTC(),
			Credential: rotation.Credential{Username: "app_" + who, Secret: secret.New(fmt.Sprintf("%s-%d-%s", who, i, bytes.Repeat([]byte("x"), 4096)))}}
		if err := s.Publish(ctx, rotation.PublishRequest{Path: path, Version: v}); err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		if i%3 == 2 {
			if err := s.Rollback(ctx, rotation.RollbackRequest{Path: path, RunID: v.RunID}); err != nil {
				return fmt.Errorf("rollback %d: %w", i, err)
			}
		}
	}
	return nil
}

// TestWritersInTwoProcesses: two other processes and this one publish and
// roll back one path at once, each write through the one temporary name
// of its file under the path's lock, while this process reads: every
// write succeeds, every read gives a whole version (secret and metadata of
// one run), and no temporary file is left.
func TestWritersInTwoProcesses(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			s, dir := newStore(t, format)
			const path = "db/app.json"
			const n = 60
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for _, who := range []string{"b", "c"} {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), stressEnv+"="+who, stressEnv+"_DIR="+dir, stressEnv+"_PATH="+path,
					stressEnv+"_FORMAT="+format, stressEnv+"_N="+strconv.Itoa(n))
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				require.NoError(t, cmd.Start())
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := cmd.Wait(); err != nil {
						errs <- fmt.Errorf("process %s: %v: %s", who, err, stderr.String())
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := stressLoop(t.Context(), s, path, n, "a"); err != nil {
					errs <- fmt.Errorf("process a: %w", err)
				}
			}()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			reads := 0
			for running := true; running; reads++ {
				select {
				case <-done:
					running = false
				default:
				}
				v, err := s.Read(t.Context(), rotation.ReadRequest{Path: path})
				if err != nil {
					require.ErrorIs(t, err, rotation.ErrNotFound, "read %d", reads)
					continue
				}
				who := strings.TrimPrefix(v.Credential.Username, "app_")
				require.True(t, strings.HasPrefix(v.Credential.Secret.Reveal(), who+"-"), "read %d: the secret is the one its metadata names", reads)
			}
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			t.Logf("%d reads", reads)
			entries, err := os.ReadDir(dir + "/db")
			require.NoError(t, err)
			for _, e := range entries {
				require.NotContains(t, e.Name(), ".rotator-tmp", "left behind")
			}
		})
	}
}
