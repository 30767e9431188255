package files_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
)

// A discard that could not have the lock in time (another process holds
// it: perhaps the delayed publish the withdrawn record is for, about to
// create the file) fails and is tried again; it does not report the file
// put back without its record, which would let that publish land after
// the compensation disabled the credential.
func TestDiscardWaitingForTheLockIsNotDone(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatJSON)
	const path = "db/postgres.json"
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "db"), 0o700))
	f, err := os.OpenFile(filepath.Join(dir, "db", ".postgres.json.rotator-lock"), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX)) // the other process's publish

	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	files.SetTestHooks(s, nil, func() { once.Do(cancel) })
	run := storetest.RunID()
	err = s.Rollback(ctx, rotation.RollbackRequest{Path: path, RunID: run, Discard: true})
	require.ErrorIs(t, err, context.Canceled, "a discard that did not get the lock is not done")

	// The lock is free: the discard is tried again and records the run.
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_UN))
	files.SetTestHooks(s, nil, nil)
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: path, RunID: run, Discard: true}))
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: path, Version: storetest.Version(t, 2, run), Expect: &rotation.Expect{}})
	require.ErrorIs(t, err, rotation.ErrStoreMoved, "the withdrawn run is refused")
}
