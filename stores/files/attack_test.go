package files_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
)

// A discarding rollback that stops between its two writes (a crash after
// the current file was put back, before .previous was) is finished by the
// next try: .previous holds the last really-current version again, not a
// second copy of the current one.
func TestInterruptedDiscardIsFinished(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatJSON)
	ctx := t.Context()
	const p = "db/postgres.json"
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	for _, v := range []rotation.Version{v1, v2, v3} {
		require.NoError(t, s.Publish(ctx, rotation.PublishRequest{Path: p, Version: v}))
	}
	// The process stops right after putting the current file back: the
	// prior slot cannot be read (a directory in its place), so the
	// rollback returns there, as a crash would leave it.
	prior := filepath.Join(dir, p+".prior.previous")
	saved, err := os.ReadFile(prior)
	require.NoError(t, err)
	require.NoError(t, os.Remove(prior))
	require.NoError(t, os.Mkdir(prior, 0o700))
	require.Error(t, s.Rollback(ctx, rotation.RollbackRequest{Path: p, RunID: v3.RunID, Discard: true}))
	require.NoError(t, os.Remove(prior))
	require.NoError(t, os.WriteFile(prior, saved, 0o600))
	d, err := s.Describe(ctx, rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Equal(t, v2.RunID, d.Current.RunID, "the first write landed")

	// The compensation is retried.
	require.NoError(t, s.Rollback(ctx, rotation.RollbackRequest{Path: p, RunID: v3.RunID, Discard: true}))
	d, err = s.Describe(ctx, rotation.DescribeRequest{Path: p})
	require.NoError(t, err)
	require.Equal(t, v2.RunID, d.Current.RunID)
	require.NotNil(t, d.Previous)
	require.Equal(t, v1.RunID, d.Previous.RunID, ".previous is the last really-current version (v1), not a copy of the current one")
}

// A file published before the store took locks (an older rotator, or a
// directory restored without its dot files) has no lock file: a rollback
// still rolls back, or says why not; it never returns success having
// changed nothing.
func TestRollbackWithoutLockFile(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatJSON)
	ctx := t.Context()
	const p = "db/postgres.json"
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	for _, v := range []rotation.Version{v1, v2} {
		require.NoError(t, s.Publish(ctx, rotation.PublishRequest{Path: p, Version: v}))
	}
	require.NoError(t, os.Remove(filepath.Join(dir, "db", ".postgres.json.rotator-lock")))
	err := s.Rollback(ctx, rotation.RollbackRequest{Path: p, RunID: v2.RunID})
	d, derr := s.Describe(ctx, rotation.DescribeRequest{Path: p})
	require.NoError(t, derr)
	if err == nil {
		require.Equal(t, v1.RunID, d.Current.RunID, "Rollback returned success: v1 must be current")
	}
}

// A process killed (SIGKILL) while it holds the lock, between its compare
// and its write, leaves the lock file behind but not the lock: the kernel
// drops a flock with its holder. The next publish goes through, and the
// killed process wrote nothing.
func TestLockOfAKilledProcessIsReleased(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatJSON)
	const path = "db/postgres.json"
	v1 := storetest.Version(t, 1, storetest.RunID())
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: path, Version: v1}))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperEnv+"_DIR="+dir, helperEnv+"_PATH="+path,
		helperEnv+"_RUN_ID="+storetest.RunID(), helperEnv+"_EXPECT="+v1.RunID)
	_, err := cmd.StdinPipe() // never written: B stays under the lock
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held\n", line)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	_, err = os.Stat(filepath.Join(dir, "db", ".postgres.json.rotator-lock"))
	require.NoError(t, err, "the lock file stays")

	v2 := storetest.Version(t, 2, storetest.RunID())
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: path, Version: v2, Expect: &rotation.Expect{RunID: v1.RunID}}))
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: path})
	require.NoError(t, err)
	require.Equal(t, v2.RunID, d.Current.RunID)
	require.Equal(t, v1.RunID, d.Previous.RunID, "the killed process wrote nothing")
}
