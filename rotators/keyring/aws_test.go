package keyring_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/keyring"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
)

// Rotated by hand faster than its keys expire, a ring of 1024-byte keys
// published to AWS Secrets Manager (moto) grows a key per run; the run
// whose ring would pass AWS's 65,536 bytes per secret value fails at
// generate, before publish, and says so. The ring AWS holds is the last
// one published, whole and working, and every value AWS was sent was
// within the limit and within PublishedSize's estimate.
func TestRingAboveAWSLimitFailsBeforePublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := mototest.New(t).AWSConfig()
	storeSpec := &policy.StoreSpec{Name: "aws", AWSSM: &policy.AWSSMSpec{}}
	limit, what := policy.ValueLimit(storeSpec)
	require.Equal(t, 65536, limit)
	st, err := awssm.New(t.Context(), awssm.Config{Spec: storeSpec.AWSSM, AWS: &cfg})
	require.NoError(t, err)
	name := "rotator-test/keyring-" + fmt.Sprint(time.Now().UnixNano())
	e.target.Publish = []rotation.Publication{{StoreName: "aws", Path: name, Store: st}}
	sp := spec(72 * time.Hour)
	sp.Size = 1024
	rot, err := keyring.New(sp, keyring.WithLogger(slog.New(slog.NewTextHandler(e.logs, nil))), keyring.WithValueLimit(limit, what+" of store aws"))
	require.NoError(t, err)
	e.target.Rotator = rot
	client := secretsmanager.NewFromConfig(cfg)
	current := func() (string, appsecret.Ring) {
		out, err := client.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name), VersionStage: aws.String("AWSCURRENT")})
		require.NoError(t, err)
		v, err := st.Read(t.Context(), rotation.ReadRequest{Path: name})
		require.NoError(t, err)
		r, err := appsecret.ParseRing(v.Credential.Secret.Reveal())
		require.NoError(t, err)
		require.LessOrEqual(t, len(*out.SecretString), appsecret.PublishedSize(v.Credential.Secret.Reveal()), "the estimate bounds what AWS holds")
		require.LessOrEqual(t, len(*out.SecretString), limit)
		return *out.SecretString, r
	}

	var last appsecret.Ring
	var res rotation.Result
	for i := 0; ; i++ {
		require.Less(t, i, 60, "a ring of 1024-byte keys passes 65,536 bytes within 60 keys")
		res = e.run(rotation.Options{Wait: true})
		if res.Status != state.RunSucceeded {
			break
		}
		_, last = current()
		require.Len(t, last.Keys, i+2, "one key more per run: none has expired")
	}
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	require.Equal(t, state.StepGenerate, res.Step, "failed before publish: %+v", res)
	require.ErrorContains(t, res.Err, fmt.Sprintf("the new ring would hold %d keys", len(last.Keys)+1))
	require.ErrorContains(t, res.Err, "above AWS Secrets Manager's limit on a secret value of store aws (65536 bytes): nothing was published")
	t.Logf("refused at %d keys: %v", len(last.Keys)+1, res.Err)
	raw, now := current()
	require.Equal(t, last.KeyIDs(), now.KeyIDs(), "AWS still holds the last ring published")
	require.Greater(t, len(raw), limit-2000, "the last ring published was close to the limit")
	v, err := st.Read(t.Context(), rotation.ReadRequest{Path: name})
	require.NoError(t, err)
	require.NoError(t, rot.Test(t.Context(), rotation.TestRequest{SecretID: secretID, Credential: v.Credential}), "the published ring works")
}
