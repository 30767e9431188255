package rotation_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// A files store that cannot be written (here: its directory is missing
// and cannot be created, as with a volume that was not mounted; a
// read-only mount or a directory rotator may not write is the same) fails
// the publish before anything is written there. The compensation's
// discard must not need to write there either: nothing was published, so
// there is nothing to put back, and the run fails cleanly (the new
// credential discarded) instead of needing attention for ever.
func TestDiscardAtAStoreThatCannotBeWrittenStillCompletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()

	// procfs refuses mkdir, even to root.
	mirror, err := files.New(&policy.FilesSpec{Dir: "/proc/rotator-missing-volume"}, "")
	require.NoError(t, err)
	e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: mirror})

	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.ErrorContains(t, res.Err, "mirror")
	require.NoError(t, e.login(v1.Credential.Username, v1.Credential.Secret.Reveal()), "the old credential still logs in")
	require.NoError(t, e.publishedWorks())
	e.noPlaintext()
}
