package rotation_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
	"github.com/rotator/rotator/stores/vault"
)

// handBeforeDiscard wraps a store: just before the first discarding
// rollback reaches it, a person edits the store by hand (edit).
type handBeforeDiscard struct {
	rotation.Store
	once sync.Once
	edit func()
}

func (h *handBeforeDiscard) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if req.Discard {
		h.once.Do(h.edit)
	}
	return h.Store.Rollback(ctx, req)
}

// TestAWSDiscardAfterPreviousMovedByHand: a run published R3 to AWS, then
// the files store refused it, so compensation puts AWS back. Meanwhile a
// person moved AWSPREVIOUS by hand from R2 (really current before R3) to
// R1 (whose role R3 has re-keyed). Putting AWS back must not make R1
// current: it does not log in, and the files store still publishes R2.
func TestAWSDiscardAfterPreviousMovedByHand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	moto := mototest.New(t)
	cfg := moto.AWSConfig()
	astore, err := awssm.New(e.ctx, awssm.Config{Spec: &policy.AWSSMSpec{Region: "us-east-1"}, AWS: &cfg})
	require.NoError(t, err)
	sm := secretsmanager.NewFromConfig(cfg)
	const name = "attack/aws-previous-by-hand"
	var runs []string
	hand := &handBeforeDiscard{Store: astore, edit: func() {
		// The person puts AWSPREVIOUS on R1 (it is on R2 now).
		r1, err := awssm.Token(runs[0])
		require.NoError(t, err)
		r2, err := awssm.Token(runs[1])
		require.NoError(t, err)
		_, err = sm.UpdateSecretVersionStage(e.ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String(name),
			VersionStage: aws.String(awssm.LabelPrevious), MoveToVersionId: aws.String(r1), RemoveFromVersionId: aws.String(r2)})
		require.NoError(t, err)
	}}
	fstore := &failingStore{Store: e.store}
	e.target.Publish = []rotation.Publication{
		{StoreName: "aws", Path: name, Store: hand},
		{StoreName: "local", Path: "db/postgres.json", Store: fstore},
	}
	for i := 0; i < 2; i++ {
		res := e.run(rotation.Options{Wait: true})
		require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
		runs = append(runs, res.RunID)
	}
	r2 := e.published()

	fstore.mu.Lock()
	fstore.fail = true
	fstore.mu.Unlock()
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	t.Logf("faulty run: %+v err=%v", res, err)
	require.NoError(t, err)
	require.Equal(t, state.RunNeedsAttention, res.Status, "AWS cannot be put back safely: a person decides")
	require.ErrorContains(t, res.Err, runs[1], "the refusal names the version that should be previous")
	fstore.mu.Lock()
	fstore.fail = false
	fstore.mu.Unlock()

	// Whatever the run says, what AWS publishes as current must log in.
	v, err := astore.Read(e.ctx, rotation.ReadRequest{Path: name, Which: rotation.Current})
	require.NoError(t, err)
	t.Logf("AWS current after compensation: version %d run %s (%s); files: version %d run %s", v.Number, v.RunID, v.Credential.Username, r2.Number, r2.RunID)
	require.NoError(t, e.login(v.Credential.Username, v.Credential.Secret.Reveal()), "what AWS publishes as current must log in")
	require.NoError(t, e.publishedWorks(), "what files publishes as current must log in")
}

// TestVaultDiscardAfterPreviousDeletedByHand: a run published R3 to Vault,
// then the files store refused it, so compensation puts Vault back.
// Meanwhile a person soft-deleted R2's KV version (really current before
// R3). Putting Vault back must not make the next older readable version
// (R1, whose role R3 re-keyed) current: it does not log in.
func TestVaultDiscardAfterPreviousDeletedByHand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vs := vaultdev.New(t, vaultdev.Options{})
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(vs.RootToken), 0o600))
	vstore, err := vault.New(e.ctx, vault.Config{Spec: &policy.VaultSpec{Address: vs.Addr, Mount: "secret",
		Auth: policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: tokenFile}}}}})
	require.NoError(t, err)
	t.Cleanup(vstore.Close)
	kv := vs.Client(t).KVv2("secret")
	const path = "attack/vault-previous-deleted"
	hand := &handBeforeDiscard{Store: vstore, edit: func() {
		m, err := kv.GetMetadata(e.ctx, path)
		require.NoError(t, err)
		require.NoError(t, kv.DeleteVersions(e.ctx, path, []int{m.CurrentVersion - 1}))
	}}
	fstore := &failingStore{Store: e.store}
	e.target.Publish = []rotation.Publication{
		{StoreName: "vault", Path: path, Store: hand},
		{StoreName: "local", Path: "db/postgres.json", Store: fstore},
	}
	for i := 0; i < 2; i++ {
		res := e.run(rotation.Options{Wait: true})
		require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	}
	fstore.mu.Lock()
	fstore.fail = true
	fstore.mu.Unlock()
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	t.Logf("faulty run: %+v err=%v", res, err)
	require.NoError(t, err)
	v, err := vstore.Read(e.ctx, rotation.ReadRequest{Path: path, Which: rotation.Current})
	require.NoError(t, err)
	require.NoError(t, e.login(v.Credential.Username, v.Credential.Secret.Reveal()), "what Vault publishes as current (version %d) must log in", v.Number)
	require.NoError(t, e.publishedWorks(), "what files publishes as current must log in")
	require.Equal(t, state.RunNeedsAttention, res.Status, "Vault cannot be put back safely: a person decides")
}

// handBeforeRollback wraps a store: just before the first rollback reaches
// it, a person edits the store by hand (edit).
type handBeforeRollback struct {
	rotation.Store
	once sync.Once
	edit func()
}

func (h *handBeforeRollback) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	h.once.Do(h.edit)
	return h.Store.Rollback(ctx, req)
}

// TestRollbackSaysRestoredOnlyWhenTheStorePublishesIt: `rotator rollback`
// observed the files store publishing R2; while it re-enabled and tested
// R1 at the target, a person replaced the file with a version of their
// own. The store's rollback then changes nothing (its current version is
// not R2's): the rollback must not say the store was restored, nor end
// "rolled back" with R1 recorded as current.
func TestRollbackSaysRestoredOnlyWhenTheStorePublishesIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mine := storetest.Version(t, 77, storetest.RunID())
	hand := &handBeforeRollback{Store: e.store, edit: func() {
		require.NoError(t, e.store.Publish(e.ctx, rotation.PublishRequest{Path: "db/postgres.json", Version: mine}))
	}}
	e.target.Publish = []rotation.Publication{{StoreName: "local", Path: "db/postgres.json", Store: hand}}
	for i := 0; i < 2; i++ {
		require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	}
	res, err := e.engine.Rollback(e.ctx, e.target)
	t.Logf("rollback: %+v err=%v", res, err)
	cur := e.published()
	require.Equal(t, mine.RunID, cur.RunID, "the person's version is what the store publishes")
	if err == nil {
		require.NotEmpty(t, res.Failed, "the store was not restored: the result must say so (restored: %v)", res.Restored)
	}
	runs, rerr := e.db.Runs(e.ctx, "db/postgres", 1)
	require.NoError(t, rerr)
	require.NotEqual(t, state.RunRolledBack, runs[0].Status, "history must not say rolled back: %s", runs[0].Detail)
}

// handAfterRekey wraps a rotator: right after single-role's re-key (a
// Generate with Apply), a person edits the store by hand (edit).
type handAfterRekey struct {
	rotation.Rotator
	once sync.Once
	edit func()
}

func (h *handAfterRekey) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	res, err := h.Rotator.Generate(ctx, req)
	if err == nil && req.Apply != nil && h.edit != nil {
		h.once.Do(h.edit)
	}
	return res, err
}

// TestSingleRoleStoreEditedDuringRekey: single-role re-keyed the one role;
// before its publish lands, a person (or a config tool) rewrites the file
// with the same, old credential under another run id. The store refuses
// the publish (it moved since it was observed). This process still holds
// its lease: the role must not be left with a password no store publishes
// — what the store publishes must log in once the run has ended, and
// after the next tick too.
func TestSingleRoleStoreEditedDuringRekey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	single, err := newRotator(e, &policy.PostgresSpec{Role: e.role, Mode: "single_role"})
	require.NoError(t, err)
	h := &handAfterRekey{Rotator: single}
	e.target.Rotator = h
	require.Equal(t, state.RunSucceeded, e.run(rotation.Options{Wait: true}).Status)
	v1 := e.published()
	h.edit = func() {
		copyOf := v1
		copyOf.RunID = storetest.RunID()
		require.NoError(t, e.store.Publish(e.ctx, rotation.PublishRequest{Path: "db/postgres.json", Version: copyOf}))
	}
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	t.Logf("run: %+v err=%v", res, err)
	if err := e.publishedWorks(); err != nil {
		t.Errorf("after the run: what the store publishes must log in: %v", err)
	}
	require.NoError(t, err)
	require.Equal(t, state.RunFailed, res.Status, "this process still holds its lease: it puts the stores back and ends the run")
	res, err = e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	t.Logf("next run: %+v err=%v", res, err)
	require.NoError(t, e.publishedWorks(), "after the next run: what the store publishes must log in")
	e.noPlaintext()
}

// TestFirstRotationFailsAtTheSecondStore: the first rotation ever of a
// secret published to two stores; the first took version 1, the second
// refused it. Once the second store works again, the secret must not stay
// stuck: later ticks end the run (or go on), and what each store publishes
// logs in.
func TestFirstRotationFailsAtTheSecondStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	second, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	broken := &failingStore{Store: second, fail: true}
	e.target.Publish = append(e.target.Publish, rotation.Publication{StoreName: "mirror", Path: "db/postgres.json", Store: broken})
	res, err := e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
	t.Logf("first run: %+v err=%v", res, err)
	require.NoError(t, err)
	require.NoError(t, e.publishedWorks(), "what the first store publishes logs in")
	broken.mu.Lock()
	broken.fail = false
	broken.mu.Unlock()
	for i := 0; i < 3; i++ {
		e.expireWait()
		res, err = e.engine.Run(e.ctx, e.target, rotation.Options{Wait: true})
		t.Logf("run %d: %+v err=%v", i+2, res, err)
		require.NoError(t, err)
		require.NoError(t, e.publishedWorks())
		if res.Status == state.RunSucceeded {
			// Rolled forward: both stores publish the first version.
			for _, p := range e.target.Publish {
				d, err := p.Store.Describe(e.ctx, rotation.DescribeRequest{Path: p.Path})
				require.NoError(t, err)
				require.NotNil(t, d.Current, "%s publishes the first version", p)
				require.Equal(t, res.RunID, d.Current.RunID, "%s publishes the first version", p)
			}
			return
		}
	}
	t.Fatalf("the secret is stuck after the store came back: %+v", res)
}

// expireWait makes every unfinished run's wait_until due now.
func (e *env) expireWait() {
	e.t.Helper()
	_, err := e.db.Pool().Exec(e.ctx, `UPDATE rotator_runs SET wait_until = now() - interval '1 second' WHERE wait_until IS NOT NULL`)
	require.NoError(e.t, err)
}
