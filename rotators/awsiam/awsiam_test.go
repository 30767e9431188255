package awsiam_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/awsiam"
	"github.com/rotator/rotator/rotators/rotatortest"
)

// The suite starts from a user without keys: its first generate creates
// the user's first key, the next ones create the second beside it.
func TestConformance(t *testing.T) {
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			user, _ := newUser(t, 0)
			return newRotator(t, user)
		},
		Login:      func(t *testing.T, c rotation.Credential) error { return login(t, c) },
		CanRestore: true,
	})
}

// Two rotations as the engine runs them: the key the first one retires
// is Inactive, the second deletes it to free its slot, and then AWS
// (moto, IAM authentication enforced) refuses it. The user never holds
// more than two keys, and the published fields are access_key_id and
// secret_access_key.
func TestRotationsRetireThenDelete(t *testing.T) {
	ctx := context.Background()
	user, init := newUser(t, 1)
	var logs bytes.Buffer
	r := newRotator(t, user, func(c *awsiam.Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	k0 := init[0]
	f1 := rotation.Fence{Token: 1, RunID: "run-1"}
	g1, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-1", Fence: f1})
	require.NoError(t, err)
	require.Equal(t, k0.KeyID, g1.Replaces.KeyID, "a first rotation replaces the user's one active key")
	k1 := g1.Credential
	d := rotation.Version{Number: 1, RunID: "run-1", Credential: k1}.Data()
	require.Equal(t, k1.KeyID, d["access_key_id"])
	require.Equal(t, k1.Secret.Reveal(), d["secret_access_key"])
	require.Equal(t, user, d["username"])
	require.Equal(t, "us-east-1", d["region"])
	require.Len(t, keys(t, user), 2)

	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "aws/app", Old: k0.Meta(), New: k1.Meta(), Fence: f1}))
	require.Equal(t, types.StatusTypeInactive, status(t, user, k0.KeyID))
	require.NoError(t, login(t, k1))
	require.Error(t, r.Test(ctx, rotation.TestRequest{Credential: k0}), "Test refuses an Inactive key")

	f2 := rotation.Fence{Token: 2, RunID: "run-2"}
	g2, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-2", Current: k1.Meta(), Fence: f2})
	require.NoError(t, err)
	k2 := g2.Credential
	require.Len(t, keys(t, user), 2, "the retired key was deleted to free its slot")
	require.Equal(t, "", string(status(t, user, k0.KeyID)))
	require.True(t, refused(callAWS(t, k0)), "AWS refuses the deleted key")
	require.NoError(t, callAWS(t, k1))
	require.NoError(t, callAWS(t, k2))

	for _, s := range []string{k0.Secret.Reveal(), k1.Secret.Reveal(), k2.Secret.Reveal()} {
		require.NotContains(t, logs.String(), s, "a secret access key in the logs")
	}
	require.Contains(t, logs.String(), k0.KeyID, "the logs name the deleted key by its id")
}

// A first rotation of a user with two active keys is refused, naming the
// user and both keys; nothing changes.
func TestFirstRotationRefusesTwoActiveKeys(t *testing.T) {
	user, ks := newUser(t, 2)
	r := newRotator(t, user)
	_, err := r.Generate(context.Background(), rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-1"})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	for _, s := range []string{user, ks[0].KeyID, ks[1].KeyID} {
		require.Contains(t, err.Error(), s)
	}
	require.Len(t, keys(t, user), 2)
	require.NoError(t, login(t, ks[0]))
	require.NoError(t, login(t, ks[1]))
}

// Two keys and neither is the one the stores publish: refused, naming
// the user and both keys; neither is touched.
func TestRefusesWhenNeitherKeyIsCurrent(t *testing.T) {
	user, ks := newUser(t, 2)
	r := newRotator(t, user)
	_, err := r.Generate(context.Background(), rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-1",
		Current: rotation.CredentialMeta{Username: user, KeyID: "AKIAGONEGONEGONEGONE"}})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	for _, s := range []string{user, ks[0].KeyID, ks[1].KeyID, "AKIAGONEGONEGONEGONE", "neither"} {
		require.Contains(t, err.Error(), s)
	}
	require.Len(t, keys(t, user), 2)
}

// The second key is active and not the current one (a rollback left it
// for its clients, or a person made it): it may be in use, so generate
// refuses and names it; once a person deactivates it, generate deletes
// it.
func TestActiveSecondKeyIsNeverDeleted(t *testing.T) {
	ctx := context.Background()
	user, ks := newUser(t, 2)
	cur, other := ks[0], ks[1]
	r := newRotator(t, user)
	req := rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-1", Current: cur.Meta(), Fence: rotation.Fence{Token: 1, RunID: "run-1"}}
	_, err := r.Generate(ctx, req)
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	for _, s := range []string{user, cur.KeyID, other.KeyID, "may be in use", "update-access-key"} {
		require.Contains(t, err.Error(), s)
	}
	require.NoError(t, login(t, other), "the active second key is untouched")

	_, err = admin(t).UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(user), AccessKeyId: aws.String(other.KeyID), Status: types.StatusTypeInactive})
	require.NoError(t, err)
	g, err := r.Generate(ctx, req)
	require.NoError(t, err)
	require.Equal(t, "", string(status(t, user, other.KeyID)), "the Inactive key was deleted")
	require.NoError(t, login(t, cur))
	require.NoError(t, login(t, g.Credential))
}

// A retry of a generate that ended after CreateAccessKey leaves no extra
// key: whether the earlier try recorded the key's id or only its intent,
// the retry deletes that key and creates another; the current key stays.
func TestRetriedGenerateLeavesNoStray(t *testing.T) {
	for _, recorded := range []bool{true, false} {
		t.Run(map[bool]string{true: "key recorded", false: "intent only"}[recorded], func(t *testing.T) {
			ctx := context.Background()
			user, ks := newUser(t, 1)
			cur := ks[0]
			r := newRotator(t, user)
			at := time.Now().Unix()
			tag(t, user, awsiam.TagPending, "run=run-7 at="+itoa(at))
			stray := createKey(t, user) // what the crashed try created
			if recorded {
				tag(t, user, awsiam.TagPending, "run=run-7 at="+itoa(at)+" key="+stray.KeyID)
			}
			g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-7", Current: cur.Meta()})
			require.NoError(t, err)
			require.Len(t, keys(t, user), 2)
			require.Equal(t, "", string(status(t, user, stray.KeyID)), "the earlier try's key was deleted")
			require.True(t, refused(callAWS(t, stray)))
			require.NoError(t, login(t, cur))
			require.NoError(t, login(t, g.Credential))

			// Another run does not take that rule for itself: the new key is
			// active and not current, so a generate of another run refuses.
			_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-8", Current: cur.Meta()})
			require.ErrorContains(t, err, g.Credential.KeyID)
			require.NoError(t, login(t, g.Credential))
		})
	}
}

// A key created by hand before the intent is not taken for a stray.
func TestKeyOlderThanIntentIsNotAStray(t *testing.T) {
	user, ks := newUser(t, 2)
	r := newRotator(t, user)
	tag(t, user, awsiam.TagPending, "run=run-7 at="+itoa(time.Now().Add(time.Hour).Unix()))
	_, err := r.Generate(context.Background(), rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-7", Current: ks[0].Meta()})
	require.ErrorContains(t, err, "may be in use")
	require.Len(t, keys(t, user), 2)
}

// The fence tag: an action whose lease token is older than the one the
// user's tag names is refused (ErrFenced) and changes nothing.
func TestFenceRefusesAnOlderToken(t *testing.T) {
	ctx := context.Background()
	user, ks := newUser(t, 1)
	r := newRotator(t, user)
	g, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-5", Fence: rotation.Fence{Token: 5, RunID: "run-5"}})
	require.NoError(t, err)
	stale := rotation.Fence{Token: 4, RunID: "run-4"}
	err = r.Retire(ctx, rotation.RetireRequest{SecretID: "aws/app", Old: ks[0].Meta(), New: g.Credential.Meta(), Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.True(t, rotation.IsPermanent(err))
	require.Equal(t, types.StatusTypeActive, status(t, user, ks[0].KeyID))
	err = r.Discard(ctx, rotation.DiscardRequest{SecretID: "aws/app", New: g.Credential.Meta(), Current: ks[0].Meta(), Fence: stale})
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.NoError(t, login(t, g.Credential))
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{SecretID: "aws/app", Old: ks[0].Meta(), New: g.Credential.Meta(), Fence: rotation.Fence{Token: 6, RunID: "run-5"}}))
	require.Equal(t, types.StatusTypeInactive, status(t, user, ks[0].KeyID))
}

// LastUsed: what IAM says, with a young never-used key counted as used
// (AWS records uses late), and a deleted key not found.
func TestLastUsed(t *testing.T) {
	ctx := context.Background()
	user, ks := newUser(t, 1)
	k := ks[0]
	now := time.Now()
	lagged := newRotator(t, user)
	resp, err := lagged.LastUsed(ctx, rotation.LastUsedRequest{Credential: k.Meta(), Now: now})
	require.NoError(t, err)
	require.False(t, resp.Never, "a key younger than LastUsedLag is not reported as never used")
	require.Equal(t, now, resp.LastUsed)

	r := newRotator(t, user, func(c *awsiam.Config) { c.LastUsedLag = time.Nanosecond })
	resp, err = r.LastUsed(ctx, rotation.LastUsedRequest{Credential: k.Meta(), Now: now.Add(time.Second)})
	require.NoError(t, err)
	require.True(t, resp.Never)

	require.NoError(t, callAWS(t, k))
	resp, err = r.LastUsed(ctx, rotation.LastUsedRequest{Credential: k.Meta(), Now: time.Now()})
	require.NoError(t, err)
	require.False(t, resp.Never)
	require.WithinDuration(t, time.Now(), resp.LastUsed, time.Minute)

	_, err = admin(t).DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(user), AccessKeyId: aws.String(k.KeyID)})
	require.NoError(t, err)
	_, err = r.LastUsed(ctx, rotation.LastUsedRequest{Credential: k.Meta(), Now: time.Now()})
	require.ErrorIs(t, err, rotation.ErrNotFound)

	_, err = r.Clients(ctx, rotation.ClientsRequest{Old: k.Meta()})
	require.ErrorIs(t, err, rotation.ErrUnsupported)
}

// A user that does not exist, and a rotator whose own key may not manage
// it, fail permanently with what to do.
func TestPermanentErrors(t *testing.T) {
	ctx := context.Background()
	r := newRotator(t, "rt-nobody-"+randHex(t, 4))
	_, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-1"})
	require.True(t, rotation.IsPermanent(err))
	require.ErrorContains(t, err, "does not exist")

	user, _ := newUser(t, 1)
	weak, _ := newUser(t, 0)
	wk := createKey(t, weak) // a user without any policy
	r = newRotator(t, user, func(c *awsiam.Config) {
		ac := mototestConfig(t, wk)
		c.AWS = &ac
	})
	_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-1"})
	require.True(t, rotation.IsPermanent(err))
	require.ErrorContains(t, err, "deploy/aws/rotator-awsiam-policy.json")
	require.NotContains(t, err.Error(), wk.Secret.Reveal())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mototestConfig(t *testing.T, c rotation.Credential) aws.Config {
	return mototest.ConfigWithKey(server(t).URL, c.KeyID, c.Secret.Reveal())
}

// After a failed generate the engine discards with no new key named: a
// key the run created and never returned is deleted, the current key is
// kept, and with nothing of the run's there it does nothing.
func TestDiscardAfterFailedGenerate(t *testing.T) {
	ctx := context.Background()
	user, ks := newUser(t, 1)
	cur := ks[0]
	r := newRotator(t, user)
	f := rotation.Fence{Token: 3, RunID: "run-3"}
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "aws/app", Current: cur.Meta(), Fence: f}), "nothing of the run's: a no-op")
	require.Len(t, keys(t, user), 1)

	tag(t, user, awsiam.TagPending, "run=run-3 at="+itoa(time.Now().Unix()))
	stray := createKey(t, user)
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "aws/app", Current: cur.Meta(), Fence: f}))
	require.Equal(t, "", string(status(t, user, stray.KeyID)), "the run's unreturned key was deleted")
	require.NoError(t, login(t, cur))
	require.Error(t, r.Discard(ctx, rotation.DiscardRequest{SecretID: "aws/app", New: cur.Meta(), Current: cur.Meta(), Fence: f}), "never the current key")
}
