package rotation_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/vault"
)

// refusingPublish is a store whose publishes fail for good.
type refusingPublish struct{ rotation.Store }

func (refusingPublish) Publish(context.Context, rotation.PublishRequest) error {
	return rotation.Permanent(errors.New("store down for good"))
}

// TestStalePublishAfterTheResumedRunWasDiscarded: process A sends its
// publish of run R1, which is delayed. B resumes R1 (same run id, same
// version), publishes it to the first store, fails at the second and
// compensates: the first store is put back to R0 and R1's credential is
// discarded at the target. Then A's publish lands: the store holds R0,
// which is what A observed, so the fence passes and A makes the discarded
// credential current. The fence compares run ids, which cannot tell "R0
// still current" from "R0 current again"; the discard's record of the
// withdrawn run (files: a file beside the secret; Vault: custom_metadata;
// AWS: a tag) makes each store refuse it. It failed for all three stores
// before that record existed.
func TestStalePublishAfterTheResumedRunWasDiscarded(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"files", "awssm", "vault"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			staleAfterDiscard(t, kind)
		})
	}
}

func staleAfterDiscard(t *testing.T, kind string) {
	e := newEnv(t)
	e.engine.LeaseTTL = 10 * time.Minute
	var first rotation.Store = e.store
	path := "db/postgres.json"
	if kind == "awssm" {
		cfg := mototest.New(t).AWSConfig()
		a, err := awssm.New(e.ctx, awssm.Config{Spec: &policy.AWSSMSpec{Region: "us-east-1"}, AWS: &cfg})
		require.NoError(t, err)
		first, path = a, "db/app"
		e.target.Publish = []rotation.Publication{{StoreName: "aws", Path: path, Store: a}}
	}
	if kind == "vault" {
		vs := vaultdev.New(t, vaultdev.Options{})
		tokenFile := filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(tokenFile, []byte(vs.RootToken), 0o600))
		v, err := vault.New(e.ctx, vault.Config{Spec: &policy.VaultSpec{Address: vs.Addr, Mount: "secret",
			Auth: policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: tokenFile}}}}})
		require.NoError(t, err)
		t.Cleanup(v.Close)
		first, path = v, "stale/after-discard"
		e.target.Publish = []rotation.Publication{{StoreName: "vault", Path: path, Store: v}}
	}
	works := func() error {
		v, err := first.Read(e.ctx, rotation.ReadRequest{Path: path, Which: rotation.Current})
		if err != nil {
			return err
		}
		return e.login(v.Credential.Username, v.Credential.Secret.Reveal())
	}
	runOf := func() string {
		v, err := first.Read(e.ctx, rotation.ReadRequest{Path: path, Which: rotation.Current})
		require.NoError(t, err)
		return v.RunID
	}
	r0 := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, r0.Status)

	other, err := files.New(&policy.FilesSpec{Dir: t.TempDir()}, "")
	require.NoError(t, err)
	req, d, doneA := heldPublish(t, e, e.target, e.target.Publish[0].StoreName, path, first)
	r1 := req.Version.RunID

	e.expireLease()
	b := &rotation.Engine{DB: e.db, Key: e.key, Logger: e.engine.Logger, Holder: "B-" + t.Name(), LeaseTTL: 10 * time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }}
	targetB := e.target
	targetB.Publish = append(targetB.Publish, rotation.Publication{StoreName: "other", Path: "db/postgres.json", Store: refusingPublish{other}})
	resB, err := b.Run(e.ctx, targetB, rotation.Options{Wait: true})
	t.Logf("B: %+v %v", resB, err)
	require.Equal(t, r1, resB.RunID, "B resumed A's run")
	require.Equal(t, r0.RunID, runOf(), "B put the first store back")
	require.NoError(t, works())

	close(d.release)
	landed := <-d.landed
	errA := <-doneA
	t.Logf("A's publish: %v; A returned: %v", landed, errA)
	require.NoError(t, works(), "what the store publishes logs in")
}
