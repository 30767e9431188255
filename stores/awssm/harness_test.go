package awssm_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/stores/awssm"
)

// The tests run against moto_server (started once for the package) unless
// ROTATOR_TEST_AWS_REAL=1: then they use the SDK's default credential chain
// and region (AWS_REGION, or ROTATOR_TEST_AWS_REGION), create every secret
// under the prefix rotator-test/<random>/ and force-delete them at cleanup.
// ROTATOR_TEST_AWS_KMS_KEY names a KMS key for the create test on real AWS.
const (
	envReal   = "ROTATOR_TEST_AWS_REAL"
	envRegion = "ROTATOR_TEST_AWS_REGION"
	envKMS    = "ROTATOR_TEST_AWS_KMS_KEY"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

// env is where a test's secrets live.
type env struct {
	cfg    aws.Config
	client *secretsmanager.Client
	real   bool
	prefix string
}

var runPrefix = "rotator-test/" + randomHex(4) + "/"

func testEnv(t *testing.T) env {
	t.Helper()
	if os.Getenv(envReal) == "1" {
		var opts []func(*config.LoadOptions) error
		if r := os.Getenv(envRegion); r != "" {
			opts = append(opts, config.WithRegion(r))
		}
		cfg, err := config.LoadDefaultConfig(t.Context(), opts...)
		require.NoError(t, err, "load the default AWS configuration")
		require.NotEmpty(t, cfg.Region, "set AWS_REGION or %s for tests against real AWS", envRegion)
		return env{cfg: cfg, client: secretsmanager.NewFromConfig(cfg), real: true, prefix: runPrefix}
	}
	cfg := mototest.Shared(t).AWSConfig()
	return env{cfg: cfg, client: secretsmanager.NewFromConfig(cfg), prefix: runPrefix}
}

// name returns a fresh secret name, force-deleted at cleanup.
func (e env) name(t *testing.T) string {
	t.Helper()
	n := e.prefix + randomHex(8)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.client.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{
			SecretId: aws.String(n), ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
	return n
}

// store builds a Store on the test's configuration.
func (e env) store(t *testing.T, spec *policy.AWSSMSpec) *awssm.Store {
	t.Helper()
	if spec == nil {
		spec = &policy.AWSSMSpec{}
	}
	cfg := e.cfg
	s, err := awssm.New(t.Context(), awssm.Config{Spec: spec, AWS: &cfg})
	require.NoError(t, err)
	return s
}

// storeVia is a store whose calls go through transport, with retryer
// (nil: the SDK's default, as in production). A test that shapes the
// answers (cut, refused) runs against moto only.
func (e env) storeVia(t *testing.T, transport http.RoundTripper, retryer func() aws.Retryer) *awssm.Store {
	t.Helper()
	if e.real {
		t.Skip("the answers are shaped in a local transport on moto's")
	}
	cfg := e.cfg.Copy()
	cfg.HTTPClient = &http.Client{Transport: transport}
	cfg.Retryer = retryer
	s, err := awssm.New(t.Context(), awssm.Config{Spec: &policy.AWSSMSpec{}, AWS: &cfg})
	require.NoError(t, err)
	return s
}

// labels returns the raw VersionIdsToStages of a secret.
func (e env) labels(t *testing.T, name string) map[string][]string {
	t.Helper()
	out, err := e.client.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	require.NoError(t, err)
	// Drop unlabelled versions: AWS does not list them, moto does.
	m := map[string][]string{}
	for id, ls := range out.VersionIdsToStages {
		if len(ls) > 0 {
			m[id] = ls
		}
	}
	return m
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
