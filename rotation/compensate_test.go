package rotation_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// flakyStore is a real store whose publishes, rollbacks and reads can be
// made to fail, as an unreachable store's would.
type flakyStore struct {
	rotation.Store
	mu                              sync.Mutex
	failPublish, failRollback, down bool
}

var errUnreachable = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func (f *flakyStore) set(fn func(f *flakyStore)) { f.mu.Lock(); fn(f); f.mu.Unlock() }

func (f *flakyStore) is(b *bool) bool { f.mu.Lock(); defer f.mu.Unlock(); return *b || f.down }

func (f *flakyStore) Publish(ctx context.Context, req rotation.PublishRequest) error {
	if f.is(&f.failPublish) {
		return errUnreachable
	}
	return f.Store.Publish(ctx, req)
}

func (f *flakyStore) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if f.is(&f.failRollback) {
		return errUnreachable
	}
	return f.Store.Rollback(ctx, req)
}

func (f *flakyStore) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	if f.is(new(bool)) {
		return rotation.DescribeResponse{}, errUnreachable
	}
	return f.Store.Describe(ctx, req)
}

// Issue 13, finding 2: a store took the new version, the next store failed,
// and the first could not be put back. The new credential must stay valid
// (a store serves it) and the run needs attention; a later run carries the
// compensation on, and only then is the new credential disabled.
func TestCompensationContinuesUntilEveryStoreIsPutBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mirrorFiles, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	mirror := &flakyStore{Store: mirrorFiles}
	local := &flakyStore{Store: e.store}
	e.target.Publish = []rotation.Publication{
		{StoreName: "mirror", Path: "db/postgres.json", Store: mirror},
		{StoreName: "local", Path: "db/postgres.json", Store: local},
	}
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()

	local.set(func(f *flakyStore) { f.failPublish = true })
	mirror.set(func(f *flakyStore) { f.failRollback = true })
	var events []notify.Event
	e.engine.Events = func(ev notify.Event) { events = append(events, ev) }
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunNeedsAttention, res.Status, "%+v", res)
	require.ErrorContains(t, res.Err, "mirror:db/postgres.json still publishes")

	// The mirror serves the new credential: it must log in.
	served, err := mirror.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Current})
	require.NoError(t, err)
	e.seen = append(e.seen, served.Credential.Secret.Reveal())
	require.Equal(t, int64(2), served.Number)
	require.NoError(t, e.login(served.Credential.Username, served.Credential.Secret.Reveal()), "what the mirror publishes logs in")
	require.NoError(t, e.login(v1.Credential.Username, v1.Credential.Secret.Reveal()), "the old credential still logs in")
	require.Len(t, events, 1)
	require.Equal(t, notify.KindNeedsAttention, events[0].Kind)

	// Still unreachable: nothing changes, nobody is told again.
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunNeedsAttention, res.Status, "%+v", res)
	require.NoError(t, e.login(served.Credential.Username, served.Credential.Secret.Reveal()))
	require.Len(t, events, 1)

	// The mirror is back: the compensation completes, the run fails, the
	// new credential is disabled only now, and the old one is published
	// everywhere.
	mirror.set(func(f *flakyStore) { f.failRollback = false })
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	back, err := mirror.Read(e.ctx, rotation.ReadRequest{Path: "db/postgres.json", Which: rotation.Current})
	require.NoError(t, err)
	require.True(t, back.Credential.Secret.Equal(v1.Credential.Secret), "the mirror was put back")
	require.Error(t, e.login(served.Credential.Username, served.Credential.Secret.Reveal()), "the discarded credential no longer logs in")
	require.NoError(t, e.publishedWorks())
	run, err := e.db.Run(e.ctx, res.RunID)
	require.NoError(t, err)
	require.Nil(t, run.Sealed, "the sealed credential is dropped once compensation is complete")

	// And the secret rotates again once the store works.
	local.set(func(f *flakyStore) { f.failPublish = false })
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.Equal(t, int64(3), res.Version)
	require.NoError(t, e.publishedWorks())
	e.noPlaintext()
}

// Issue 13, finding 1: single-role mode with a publish that fails. The role
// already has the new password, so the compensation must set the old one
// back: afterwards what the stores publish logs in.
func TestSingleRoleFailedPublishSetsTheOldPasswordBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := &policy.PostgresSpec{Role: e.role, Mode: "single_role"}
	single, err := newRotator(e, spec)
	require.NoError(t, err)
	e.target.Rotator = single
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()

	second, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	broken := &flakyStore{Store: second, failPublish: true}
	e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: broken})
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.True(t, e.published().Credential.Secret.Equal(v1.Credential.Secret))
	require.NoError(t, e.publishedWorks(), "the published (old) password logs in again")
	e.noPlaintext()
}

func newRotator(e *env, spec *policy.PostgresSpec) (*postgres.Rotator, error) {
	r, err := postgres.New(spec, secret.New(e.appDSN))
	if err == nil {
		e.t.Cleanup(r.Close)
	}
	return r, err
}

// orderStore checks, at each call, what single-role's order promises: when
// a store stages the new version the role still has the old (published)
// password; when it publishes it, the role already has the new one.
type orderStore struct {
	rotation.Store
	e                 *env
	staged, published []error // login results at each call
}

func (o *orderStore) Stage(ctx context.Context, req rotation.StageRequest) error {
	o.staged = append(o.staged, o.e.publishedWorks())
	return o.Store.Stage(ctx, req)
}

func (o *orderStore) Publish(ctx context.Context, req rotation.PublishRequest) error {
	c := req.Version.Credential
	o.published = append(o.published, o.e.login(c.Username, c.Secret.Reveal()))
	return o.Store.Publish(ctx, req)
}

// Issue 20: single-role stages the new version, then re-keys the role,
// then publishes at once. A re-key that fails after staging is a failed
// generate: the staged version is removed and the published (old)
// password is set back, so it logs in.
func TestSingleRoleStagesThenRekeysThenPublishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	single, err := newRotator(e, &policy.PostgresSpec{Role: e.role, Mode: "single_role"})
	require.NoError(t, err)
	rot := &faultRotator{Rotator: single}
	e.target.Rotator = rot
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()

	order := &orderStore{Store: e.store, e: e}
	e.target.Publish[0].Store = order
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.Len(t, order.staged, 1)
	require.NoError(t, order.staged[0], "at stage the published (old) password still logs in: the role is not re-keyed yet")
	require.Len(t, order.published, 1)
	require.NoError(t, order.published[0], "at publish the new password logs in: the role was re-keyed just before")
	rows, err := e.db.Pool().Query(e.ctx, `SELECT step FROM rotator_steps WHERE run_id = $1 ORDER BY id`, res.RunID)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"generate", "stage", "generate", "publish"}, names[:4], "prepare, stage, re-key, publish")
	v2 := e.published()
	require.NoError(t, e.login(v2.Credential.Username, v2.Credential.Secret.Reveal()))
	require.Error(t, e.login(v1.Credential.Username, v1.Credential.Secret.Reveal()))

	// The re-key fails after the stores staged the new version.
	rot.mu.Lock()
	rot.op, rot.armed = "rekey", true
	rot.mu.Unlock()
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.Contains(t, res.Detail, "failed at generate")
	require.True(t, e.published().Credential.Secret.Equal(v2.Credential.Secret), "the store still publishes the old version")
	require.NoError(t, e.publishedWorks(), "the published (old) password logs in")
	e.noPlaintext()
}
