package rotation_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// loginRoles lists the roles of the pair (and the group role) that can log in.
func (e *env) loginRoles() []string {
	e.t.Helper()
	conn, err := pgx.Connect(e.ctx, e.appDSN)
	require.NoError(e.t, err)
	defer conn.Close(e.ctx)
	var names []string
	r, err := conn.Query(e.ctx, `SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname = ANY($1) ORDER BY 1`,
		[]string{e.role, e.blue(), e.green()})
	require.NoError(e.t, err)
	for r.Next() {
		var n string
		require.NoError(e.t, r.Scan(&n))
		names = append(names, n)
	}
	require.NoError(e.t, r.Err())
	return names
}

// Two stores that publish different versions: the engine does not guess.
// The secret goes into drift, nothing is touched at the target or the
// stores, people are told once, and `adopt` refuses until the stores agree;
// then it lifts the drift and the next run rotates.
func TestDriftWhenStoresDisagree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	mirror, err := files.New(&policy.FilesSpec{Dir: dir}, "")
	require.NoError(t, err)
	e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: mirror})
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v2 := e.published()

	// Someone puts the previous version back in the mirror by hand.
	cur := filepath.Join(dir, "db/postgres.json")
	good, err := os.ReadFile(cur)
	require.NoError(t, err)
	old, err := os.ReadFile(cur + ".previous")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cur, old, 0o600))
	roles := e.loginRoles()

	var events []notify.Event
	e.engine.Events = func(ev notify.Event) { events = append(events, ev) }
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunDrift, res.Status, "%+v", res)
	require.ErrorIs(t, res.Err, rotation.ErrDrift)
	require.ErrorContains(t, res.Err, "mirror:db/postgres.json publishes version 1")
	require.ErrorContains(t, res.Err, "rotator adopt --secret db/postgres")
	require.Equal(t, roles, e.loginRoles(), "nothing was changed at the target")
	require.True(t, e.published().Credential.Secret.Equal(v2.Credential.Secret), "nothing was changed at the stores")
	sec, err := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, state.SecretDrift, sec.Status)

	// A second run says drift again without alerting again.
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunDrift, res.Status)
	require.Len(t, events, 1, "drift is announced once")
	require.Equal(t, notify.KindDrift, events[0].Kind)

	// adopt changes nothing while the stores disagree.
	rep, err := e.engine.Adopt(e.ctx, e.target, true)
	require.NoError(t, err)
	require.Empty(t, rep.Adopted)
	require.NotEmpty(t, rep.Differences)
	sec, err = e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, state.SecretDrift, sec.Status)

	// The mirror is fixed; adopt lifts the drift; the next run rotates.
	require.NoError(t, os.WriteFile(cur, good, 0o600))
	rep, err = e.engine.Adopt(e.ctx, e.target, true)
	require.NoError(t, err)
	require.NotEmpty(t, rep.Adopted, "%+v", rep)
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.Equal(t, int64(3), res.Version)
	require.NoError(t, e.publishedWorks())
	e.noPlaintext()
}

// After the state database lost the last rotation (a restore), the next
// run adopts what the stores publish instead of re-keying the live role,
// and says so in the audit log.
func TestAdoptsWhatTheStoresPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	before, err := e.db.Secret(e.ctx, "db/postgres")
	require.NoError(t, err)
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	live := e.published()
	require.Equal(t, e.green(), live.Credential.Username)

	// The state database forgets the second rotation.
	_, err = e.db.Pool().Exec(e.ctx, `UPDATE rotator_secrets SET current_version = $2, current_run_id = $3, current_meta = $4,
		previous_version = 0, previous_run_id = NULL, previous_meta = '{}' WHERE id = $1`,
		"db/postgres", before.CurrentVersion, before.CurrentRunID, before.Current)
	require.NoError(t, err)
	_, err = e.db.Pool().Exec(e.ctx, `DELETE FROM rotator_runs WHERE version = 2`)
	require.NoError(t, err)

	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.Equal(t, int64(3), res.Version, "the version is above every number a store has recorded")
	v3 := e.published()
	require.Equal(t, e.blue(), v3.Credential.Username, "the standby is the role no store publishes")
	require.NoError(t, e.login(e.blue(), v3.Credential.Secret.Reveal()))
	audit, err := e.db.AuditLog(e.ctx, "db/postgres")
	require.NoError(t, err)
	var adopted bool
	for _, a := range audit {
		if a.Action == "adopted" {
			adopted = true
			require.Contains(t, a.Detail, "version 2 ("+e.green()+")")
		}
	}
	require.True(t, adopted, "the audit log says what was adopted")
	e.noPlaintext()
}

// A store that cannot be observed while a run is unfinished stops the run
// with an error that names the store and carries none of the target's
// given secrets (an admin DSN a store error might echo).
func TestObserveErrorIsRedacted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	store := &flakyStore{Store: e.store}
	e.target.Publish = []rotation.Publication{{StoreName: "local", Path: "db/postgres.json", Store: &echoingStore{flakyStore: store, echo: e.appDSN}}}
	e.target.Redact = append(e.target.Redact, secret.New(e.appDSN))
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepPublish {
			return rotation.ErrCrash
		}
		return nil
	}
	_, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.ErrorIs(t, err, rotation.ErrCrash)
	e.expireLease()
	e.engine.Hooks = rotation.Hooks{}
	store.set(func(f *flakyStore) { f.down = true })
	_, err = e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	require.Error(t, err)
	require.ErrorContains(t, err, "observe local:db/postgres.json")
	require.NotContains(t, err.Error(), e.appDSN)
	require.ErrorIs(t, err, errUnreachable, "the error chain is kept")
}

// echoingStore's errors quote a given secret, as a careless driver might.
type echoingStore struct {
	*flakyStore
	echo string
}

func (s *echoingStore) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	d, err := s.flakyStore.Describe(ctx, req)
	if err != nil {
		return d, fmt.Errorf("describe via %s: %w", s.echo, err)
	}
	return d, nil
}
