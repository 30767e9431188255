package rotation_test

import (
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
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
	"github.com/rotator/rotator/stores/vault"
)

// One secret published to three stores at once: the files store, Vault KV
// v2 (the project's Vault API test server) and AWS Secrets Manager
// (moto_server). When Vault becomes unreachable mid-run, the stores that
// already took the new version are put back, the old credential stays
// valid and published everywhere, the run fails naming the store, and
// after the outage the next run completes.
func TestPublishToSeveralStoresAndOneGoesAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	vs := vaultdev.New(t, vaultdev.Options{})
	proxy := vaultdev.NewProxy(t, vs.Addr) // for the outage
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(vs.RootToken), 0o600))
	vstore, err := vault.New(e.ctx, vault.Config{Spec: &policy.VaultSpec{Address: proxy.Addr, Mount: "secret",
		Auth: policy.VaultAuthSpec{Token: &policy.VaultTokenAuth{Token: policy.Ref{File: tokenFile}}}}})
	require.NoError(t, err)
	t.Cleanup(vstore.Close)

	moto := mototest.New(t)
	cfg := moto.AWSConfig()
	astore, err := awssm.New(e.ctx, awssm.Config{Spec: &policy.AWSSMSpec{Region: "us-east-1"}, AWS: &cfg})
	require.NoError(t, err)
	sm := secretsmanager.NewFromConfig(cfg)

	const awsName, vaultPath = "breakpilot/database/postgres", "breakpilot/database/postgres"
	e.target.Publish = []rotation.Publication{
		e.target.Publish[0],
		{StoreName: "aws", Path: awsName, Store: astore},
		{StoreName: "vault", Path: vaultPath, Store: vstore},
	}
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := e.published()
	for _, p := range e.target.Publish {
		got, err := p.Store.Read(e.ctx, rotation.ReadRequest{Path: p.Path, Which: rotation.Current})
		require.NoError(t, err, p.String())
		require.True(t, got.Credential.Secret.Equal(v1.Credential.Secret), "%s holds the new version", p)
		require.Equal(t, int64(1), got.Number, p.String())
	}

	// Vault goes away right after the first store took version 2.
	var published atomic.Int32
	e.engine.Hooks.After = func(_ string, step state.Step) error {
		if step == state.StepPublish && published.Add(1) == 1 {
			proxy.SetDown(true)
		}
		return nil
	}
	res = e.run(rotation.Options{Wait: true})
	// Vault cannot be put back (nor asked whether it took version 2): the
	// run needs attention, and the new credential stays valid meanwhile.
	require.Equal(t, state.RunNeedsAttention, res.Status, "%+v", res)
	require.ErrorContains(t, res.Err, "vault:"+vaultPath)
	require.Equal(t, int32(2), published.Load(), "files and AWS took version 2 before Vault failed")

	// Files and AWS were put back; the old credential is current and valid.
	for _, p := range e.target.Publish[:2] {
		got, err := p.Store.Read(e.ctx, rotation.ReadRequest{Path: p.Path, Which: rotation.Current})
		require.NoError(t, err, p.String())
		require.True(t, got.Credential.Secret.Equal(v1.Credential.Secret), "%s is back on version 1", p)
	}
	out, err := sm.GetSecretValue(e.ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(awsName), VersionStage: aws.String("AWSCURRENT")})
	require.NoError(t, err)
	require.Contains(t, aws.ToString(out.SecretString), v1.RunID, "AWSCURRENT is version 1 again")
	d, err := astore.Describe(e.ctx, rotation.DescribeRequest{Path: awsName})
	require.NoError(t, err)
	require.Nil(t, d.Pending, "no stray AWSPENDING")
	require.NoError(t, e.login(v1.Credential.Username, v1.Credential.Secret.Reveal()))

	// Vault is back: the next run completes the compensation (the run
	// fails), and the one after rotates everywhere.
	proxy.SetDown(false)
	e.engine.Hooks = rotation.Hooks{}
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunFailed, res.Status, "%+v", res)
	res = e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v2 := e.published()
	for _, p := range e.target.Publish {
		got, err := p.Store.Read(e.ctx, rotation.ReadRequest{Path: p.Path, Which: rotation.Current})
		require.NoError(t, err, p.String())
		require.True(t, got.Credential.Secret.Equal(v2.Credential.Secret), "%s holds version 2", p)
		prev, err := p.Store.Read(e.ctx, rotation.ReadRequest{Path: p.Path, Which: rotation.Previous})
		require.NoError(t, err, p.String())
		require.True(t, prev.Credential.Secret.Equal(v1.Credential.Secret), "%s keeps version 1 as previous", p)
	}
	require.NoError(t, e.login(v2.Credential.Username, v2.Credential.Secret.Reveal()))
	require.Error(t, e.login(v1.Credential.Username, v1.Credential.Secret.Reveal()))
	e.noPlaintext(res.Detail)
}

// A run publishing to AWS Secrets Manager whose move of AWSCURRENT landed
// but whose answer was lost (a connection closed under the response),
// with the SDK's default retryer, as in production: the SDK sends the
// move again, AWS refuses it (the label has left the version it names),
// and the run must still succeed, with AWS publishing the new credential
// and the old one retired. (It failed as "the store moved since it was
// observed", naming its own version as the intruder, and compensated.)
func TestAWSLabelMoveWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	moto := mototest.New(t)
	cfg := moto.AWSConfig()
	cut := mototest.NewCutAnswers()
	cfg.HTTPClient = &http.Client{Transport: cut}
	cfg.Retryer = nil // the SDK's default
	astore, err := awssm.New(e.ctx, awssm.Config{Spec: &policy.AWSSMSpec{Region: "us-east-1"}, AWS: &cfg})
	require.NoError(t, err)
	const awsName = "db/app"
	e.target.Publish = []rotation.Publication{e.target.Publish[0], {StoreName: "aws", Path: awsName, Store: astore}}
	res := e.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := e.published()

	// The second version's first label move is AWSCURRENT's (no
	// AWSPREVIOUS to remember yet).
	const op = "UpdateSecretVersionStage"
	before := cut.Sent(op)
	cut.Cut(op, 1, 0)
	res = e.run(rotation.Options{Wait: true})
	require.Zero(t, cut.Armed(op), "the move's answer was cut")
	require.Greater(t, cut.Sent(op), before+1, "and the SDK sent the move again")
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v2 := e.published()
	got, err := astore.Read(e.ctx, rotation.ReadRequest{Path: awsName, Which: rotation.Current})
	require.NoError(t, err)
	require.True(t, got.Credential.Secret.Equal(v2.Credential.Secret), "AWS publishes the new version")
	require.NoError(t, e.login(v2.Credential.Username, v2.Credential.Secret.Reveal()))
	require.Error(t, e.login(v1.Credential.Username, v1.Credential.Secret.Reveal()), "the old credential is retired")
}
