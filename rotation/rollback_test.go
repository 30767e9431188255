package rotation_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// Issue 13, finding 6: a rollback that stopped half way (a store failed)
// is finished by running it again, towards the same version; once done, a
// further rollback changes nothing (it does not roll forward again).
func TestRollbackFinishesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mirrorFiles, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	mirror := &flakyStore{Store: mirrorFiles}
	e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: mirror})
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v2 := e.published()

	mirror.set(func(f *flakyStore) { f.failRollback = true })
	res, err := e.engine.Rollback(e.ctx, e.target)
	require.NoError(t, err)
	require.Len(t, res.Failed, 1, "%+v", res)
	require.Contains(t, res.Failed[0], "mirror:db/postgres.json")
	require.True(t, e.published().Credential.Secret.Equal(v1.Credential.Secret), "the first store is rolled back")

	mirror.set(func(f *flakyStore) { f.failRollback = false })
	res, err = e.engine.Rollback(e.ctx, e.target)
	require.NoError(t, err)
	require.Empty(t, res.Failed, "%+v", res)
	require.Equal(t, int64(1), res.To, "the second rollback finishes the first: version 1")
	for _, st := range []rotation.Store{e.store, mirror} {
		v, err := st.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Current})
		require.NoError(t, err)
		require.True(t, v.Credential.Secret.Equal(v1.Credential.Secret), "every store publishes version 1")
	}
	require.NoError(t, e.login(e.blue(), v1.Credential.Secret.Reveal()))

	res, err = e.engine.Rollback(e.ctx, e.target)
	require.NoError(t, err)
	require.True(t, res.Already, "a third rollback changes nothing: %+v", res)
	require.True(t, e.published().Credential.Secret.Equal(v1.Credential.Secret), "it does not roll forward to version 2")
	require.NoError(t, e.login(e.green(), v2.Credential.Secret.Reveal()), "the rolled-back credential stays valid for clients that hold it")
	sec, err := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, int64(1), sec.CurrentVersion)
	e.noPlaintext()
}

// Issue 13, finding 4: a failed run re-keyed the role of the previous
// version (the standby), so the previous version no longer logs in. A
// rollback must refuse, saying why, publish nothing and leave that role
// disabled.
func TestRollbackRefusesAPreviousVersionThatDoesNotLogIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v2 := e.published()
	require.Equal(t, e.green(), v2.Credential.Username)

	// A run that re-keys app_blue (the previous version's role) and then
	// fails to publish.
	second, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	broken := &flakyStore{Store: second, failPublish: true}
	saved := e.target.Publish
	e.target.Publish = append(append([]rotation.Publication{}, saved...), rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: broken})
	require.Equal(t, state.RunFailed, e.run(rotation.Options{Wait: true}).Status)
	e.target.Publish = saved

	_, err = e.engine.Rollback(e.ctx, e.target)
	require.ErrorIs(t, err, rotation.ErrRollbackRefused)
	require.ErrorContains(t, err, "does not work after re-enabling it")
	require.True(t, e.published().Credential.Secret.Equal(v2.Credential.Secret), "nothing was published")
	require.NoError(t, e.publishedWorks())
	require.Equal(t, []string{e.green()}, e.loginRoles(), "the dead previous role is disabled again")
	e.noPlaintext(err.Error())
}

// Issue 13, finding 7: the state key is lost while a first rotation is past
// publish. The run can still be finished (its credential is read back from
// the stores), so the runbook's "resume" works as well as its rollback.
func TestLostKeyAfterPublishOfAFirstRotationResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepPublish {
			return rotation.ErrCrash
		}
		return nil
	}
	_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.ErrorIs(t, err, rotation.ErrCrash)
	e.expireLease() // the crashed process's lease runs out
	v1 := e.published()

	other, err := seal.Generate(nil)
	require.NoError(t, err)
	lost, err := seal.Parse(other)
	require.NoError(t, err)
	eng := *e.engine
	eng.Hooks, eng.Key = rotation.Hooks{}, lost
	res, err := eng.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.True(t, e.published().Credential.Secret.Equal(v1.Credential.Secret))
	require.NoError(t, e.publishedWorks())
	require.Error(t, e.login(e.role, initialPassword), "the original credential was retired")
	e.noPlaintext()
}

// Issue 12, "what the target shows": after a rollback the rolled-away role
// stays enabled for the clients that hold it. While one of them is still
// connected, the next rotation does not re-key that role (it is the standby
// by the stores, but clients use it): the run fails at generate, saying
// why, and changes nothing; once the client is gone the next run rotates.
func TestNextRotationLeavesARolledAwayRoleInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v2 := e.published()
	_, err := e.engine.Rollback(e.ctx, e.target)
	require.NoError(t, err)
	v1 := e.published()
	require.NotEqual(t, v1.Credential.Username, v2.Credential.Username)

	conn, err := pgx.Connect(e.ctx, pgtest.UserDSN(e.appDSN, v2.Credential.Username, v2.Credential.Secret.Reveal()))
	require.NoError(t, err, "a client still on the rolled-away version")
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.NoError(t, err)
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.Contains(t, res.Err.Error(), fmt.Sprintf("the standby role %q can log in and has 1 client session(s)", v2.Credential.Username))
	require.NoError(t, e.login(v2.Credential.Username, v2.Credential.Secret.Reveal()), "the client's role is not re-keyed")
	require.NoError(t, e.publishedWorks())
	require.True(t, e.published().Credential.Secret.Equal(v1.Credential.Secret), "the stores still publish version 1")

	require.NoError(t, conn.Close(e.ctx))
	require.Eventually(t, func() bool {
		res, err = e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
		return err == nil && res.Status == state.RunSucceeded
	}, 30*time.Second, 200*time.Millisecond, "once the client is gone the next run rotates: %+v", res)
	require.NoError(t, e.publishedWorks())
	e.noPlaintext()
}
