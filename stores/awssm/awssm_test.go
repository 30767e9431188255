package awssm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/storetest"
)

func token(t *testing.T, runID string) string {
	t.Helper()
	tok, err := awssm.Token(runID)
	require.NoError(t, err)
	return tok
}

func stage(t *testing.T, s *awssm.Store, name string, v rotation.Version) {
	t.Helper()
	require.NoError(t, s.Stage(t.Context(), rotation.StageRequest{Path: name, Version: v}))
}

func publish(t *testing.T, s *awssm.Store, name string, v rotation.Version) {
	t.Helper()
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v}))
}

// requireNoSecret fails when err's text carries any of the versions' secrets.
func requireNoSecret(t *testing.T, err error, vs ...rotation.Version) {
	t.Helper()
	require.Error(t, err)
	for _, v := range vs {
		require.NotContains(t, err.Error(), v.Credential.Secret.Reveal(), "error text carries a secret")
	}
}

// TestLabelsThroughSDK checks the staging labels a plain AWS client sees
// after each step.
func TestLabelsThroughSDK(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	t1, t2, t3 := token(t, v1.RunID), token(t, v2.RunID), token(t, v3.RunID)

	publish(t, s, name, v1)
	require.Equal(t, map[string][]string{t1: {"AWSCURRENT"}}, e.labels(t, name), "after the first publish")

	stage(t, s, name, v2)
	require.Equal(t, map[string][]string{t1: {"AWSCURRENT"}, t2: {"AWSPENDING"}}, e.labels(t, name), "during stage")
	// Clients reading the secret still get v1.
	require.Equal(t, t1, clientView(t, e, name, v1))

	publish(t, s, name, v2)
	require.Equal(t, map[string][]string{t1: {"AWSPREVIOUS"}, t2: {"AWSCURRENT"}}, e.labels(t, name), "after publish")
	require.Equal(t, t2, clientView(t, e, name, v2))

	stage(t, s, name, v3)
	require.Equal(t, []string{"AWSPENDING"}, e.labels(t, name)[t3])
	require.NoError(t, s.Abort(t.Context(), rotation.AbortRequest{Path: name, RunID: v3.RunID}))
	require.Equal(t, map[string][]string{t1: {"AWSPREVIOUS"}, t2: {"AWSCURRENT"}}, e.labels(t, name), "abort clears the pending label")

	// A run aborted and staged again gets its label back.
	stage(t, s, name, v3)
	require.Equal(t, []string{"AWSPENDING"}, e.labels(t, name)[t3])
}

// clientView reads AWSCURRENT as a client would, checks that its value is
// the JSON of want.Data() (without printing the secret) and returns its
// version id. It names the stage: moto 5.2 answers a GetSecretValue without
// VersionStage with a stale version once labels were moved by
// UpdateSecretVersionStage; AWS answers with AWSCURRENT.
func clientView(t *testing.T, e env, name string, want rotation.Version) string {
	t.Helper()
	out, err := e.client.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(name), VersionStage: aws.String("AWSCURRENT")})
	require.NoError(t, err)
	var got map[string]string
	require.NoError(t, json.Unmarshal([]byte(*out.SecretString), &got))
	wantData := want.Data()
	field := want.Credential.SecretField()
	require.True(t, got[field] == wantData[field], "the stored secret differs from run %s's", want.RunID)
	delete(got, field)
	delete(wantData, field)
	require.Equal(t, wantData, got, "the value is the JSON of Version.Data")
	return *out.VersionId
}

// TestFirstStageOnEmptySecret: AWS makes the first version of a secret
// AWSCURRENT whatever labels are asked for; rotator reports it as pending
// until it is published.
func TestFirstStageOnEmptySecret(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	v1 := storetest.Version(t, 1, storetest.RunID())
	stage(t, s, name, v1)
	require.Contains(t, e.labels(t, name)[token(t, v1.RunID)], "AWSPENDING")
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	require.NoError(t, err)
	require.Nil(t, d.Current)
	require.NotNil(t, d.Pending)
	require.Equal(t, v1.RunID, d.Pending.RunID)

	publish(t, s, name, v1)
	require.Equal(t, map[string][]string{token(t, v1.RunID): {"AWSCURRENT"}}, e.labels(t, name))
}

func versionCount(t *testing.T, e env, name string) int {
	t.Helper()
	out, err := e.client.ListSecretVersionIds(t.Context(), &secretsmanager.ListSecretVersionIdsInput{
		SecretId: aws.String(name), IncludeDeprecated: aws.Bool(true)})
	require.NoError(t, err)
	return len(out.Versions)
}

func TestPublishTwiceCreatesNoSecondVersion(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, s, name, v1)
	publish(t, s, name, v2)
	n, labels := versionCount(t, e, name), e.labels(t, name)
	require.Equal(t, 2, n)

	publish(t, s, name, v2)
	stage(t, s, name, v2)
	publish(t, s, name, v2)
	require.Equal(t, n, versionCount(t, e, name), "a retried publish adds no version")
	require.Equal(t, labels, e.labels(t, name), "a retried publish moves no label")

	// A retry of the run with other data (a regenerated credential) is
	// refused rather than published under the same version id.
	v3 := storetest.Version(t, 3, storetest.RunID())
	stage(t, s, name, v3)
	require.NoError(t, s.Abort(t.Context(), rotation.AbortRequest{Path: name, RunID: v3.RunID}))
	other := storetest.Version(t, 3, v3.RunID)
	for _, err := range []error{
		s.Stage(t.Context(), rotation.StageRequest{Path: name, Version: other}),
		s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: other}),
	} {
		t.Log(err)
		require.ErrorIs(t, err, awssm.ErrVersionConflict)
		require.True(t, rotation.IsPermanent(err))
		requireNoSecret(t, err, v3, other)
	}
	// Republishing the previous run with its own data is a new publish.
	publish(t, s, name, v1)
	require.Equal(t, token(t, v1.RunID), clientView(t, e, name, v1))
	other1 := storetest.Version(t, 1, v1.RunID)
	err := s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: other1})
	require.NoError(t, err, "v1 is current: publishing its run again does nothing")
	publish(t, s, name, v2)
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: other1})
	require.ErrorIs(t, err, awssm.ErrVersionConflict, "v1's version holds other data")
}

func TestRollbackMovesLabelsBack(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	t1, t2 := token(t, v1.RunID), token(t, v2.RunID)
	publish(t, s, name, v1)
	publish(t, s, name, v2)

	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: name, RunID: v2.RunID}))
	require.Equal(t, map[string][]string{t1: {"AWSCURRENT"}, t2: {"AWSPREVIOUS"}}, e.labels(t, name))
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: name, RunID: v2.RunID}))
	require.Equal(t, map[string][]string{t1: {"AWSCURRENT"}, t2: {"AWSPREVIOUS"}}, e.labels(t, name), "second rollback")

	got, err := s.Read(t.Context(), rotation.ReadRequest{Path: name})
	require.NoError(t, err)
	require.Equal(t, v1.RunID, got.RunID)
	require.True(t, v1.Credential.Secret.Equal(got.Credential.Secret))

	// Only one version: rollback refuses and leaves it current.
	solo := e.name(t)
	publish(t, s, solo, v1)
	err = s.Rollback(t.Context(), rotation.RollbackRequest{Path: solo, RunID: v1.RunID})
	require.ErrorIs(t, err, rotation.ErrNotRestorable)
	require.Equal(t, map[string][]string{t1: {"AWSCURRENT"}}, e.labels(t, solo))
}

func TestCreateWithTagsAndKMSKey(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	kms := "alias/rotator-test"
	if e.real {
		kms = os.Getenv(envKMS)
	}
	s := e.store(t, &policy.AWSSMSpec{KMSKeyID: kms, Tags: map[string]string{"team": "payments", "env": "test"}})
	name := e.name(t)
	stage(t, s, name, storetest.Version(t, 1, storetest.RunID()))

	out, err := e.client.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	require.NoError(t, err)
	tags := map[string]string{}
	for _, tg := range out.Tags {
		tags[*tg.Key] = *tg.Value
	}
	require.Equal(t, map[string]string{"managed-by": "rotator", "team": "payments", "env": "test"}, tags)
	if kms != "" {
		require.NotNil(t, out.KmsKeyId)
		require.Equal(t, kms, *out.KmsKeyId)
	}
}

func TestCreateDisabled(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s := e.store(t, &policy.AWSSMSpec{Create: aws.Bool(false)})
	name := e.name(t)
	v1 := storetest.Version(t, 1, storetest.RunID())
	for _, err := range []error{
		s.Stage(t.Context(), rotation.StageRequest{Path: name, Version: v1}),
		s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v1}),
	} {
		t.Log(err)
		require.ErrorIs(t, err, awssm.ErrCreateDisabled)
		require.True(t, rotation.IsPermanent(err))
		require.Contains(t, err.Error(), name)
		require.Contains(t, err.Error(), "create: true")
		requireNoSecret(t, err, v1)
	}
	_, err := e.client.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	require.Error(t, err, "the secret was not created")
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	require.NoError(t, err)
	require.Nil(t, d.Current)

	// An existing secret is written to.
	_, err = e.client.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(name)})
	require.NoError(t, err)
	publish(t, s, name, v1)
}

func TestScheduledForDeletion(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, s, name, v1)
	_, err := e.client.DeleteSecret(t.Context(), &secretsmanager.DeleteSecretInput{
		SecretId: aws.String(name), RecoveryWindowInDays: aws.Int64(7)})
	require.NoError(t, err)

	_, derr := s.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	_, rerr := s.Read(t.Context(), rotation.ReadRequest{Path: name})
	for _, err := range []error{
		s.Stage(t.Context(), rotation.StageRequest{Path: name, Version: v2}),
		s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v2}),
		s.Rollback(t.Context(), rotation.RollbackRequest{Path: name, RunID: v1.RunID}),
		derr, rerr,
	} {
		t.Log(err)
		require.ErrorIs(t, err, awssm.ErrScheduledForDeletion)
		require.True(t, rotation.IsPermanent(err))
		require.Contains(t, err.Error(), "aws secretsmanager restore-secret --secret-id "+name)
		requireNoSecret(t, err, v1, v2)
	}
	require.NoError(t, s.Abort(t.Context(), rotation.AbortRequest{Path: name, RunID: v2.RunID}), "abort has nothing to clean")
}

// TestForeignPending: AWSPENDING on a version another tool wrote stops the
// rotation with a message naming the version and the command that clears
// it; a pending version of an earlier rotator run is replaced.
func TestForeignPending(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, s, name, v1)

	foreign := "f0f0f0f0-0000-4000-8000-" + randomHex(6)
	foreignValue := "lambda-" + randomHex(16)
	_, err := e.client.PutSecretValue(t.Context(), &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(name), ClientRequestToken: aws.String(foreign),
		SecretString: aws.String(foreignValue), VersionStages: []string{"AWSPENDING"}})
	require.NoError(t, err)

	for _, err := range []error{
		s.Stage(t.Context(), rotation.StageRequest{Path: name, Version: v2}),
		s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v2}),
	} {
		t.Log(err)
		require.ErrorIs(t, err, awssm.ErrForeignPending)
		require.True(t, rotation.IsPermanent(err))
		msg := err.Error()
		require.Contains(t, msg, foreign)
		require.Contains(t, msg, "aws secretsmanager update-secret-version-stage --secret-id "+name+
			" --version-stage AWSPENDING --remove-from-version-id "+foreign)
		require.NotContains(t, msg, foreignValue)
		requireNoSecret(t, err, v1, v2)
	}
	require.Equal(t, []string{"AWSPENDING"}, e.labels(t, name)[foreign], "the foreign label is left alone")
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	require.NoError(t, err)
	require.NotNil(t, d.Pending, "Describe shows the foreign pending version")
	require.Empty(t, d.Pending.RunID)

	// Abort of our run does not touch it either.
	require.NoError(t, s.Abort(t.Context(), rotation.AbortRequest{Path: name, RunID: v2.RunID}))
	require.Equal(t, []string{"AWSPENDING"}, e.labels(t, name)[foreign])

	// After the operator clears it, the rotation goes on.
	_, err = e.client.UpdateSecretVersionStage(t.Context(), &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: aws.String(name), VersionStage: aws.String("AWSPENDING"), RemoveFromVersionId: aws.String(foreign)})
	require.NoError(t, err)
	publish(t, s, name, v2)

	// A pending version of an earlier rotator run is replaced.
	v3, v4 := storetest.Version(t, 3, storetest.RunID()), storetest.Version(t, 4, storetest.RunID())
	stage(t, s, name, v3)
	stage(t, s, name, v4)
	l := e.labels(t, name)
	require.Equal(t, []string{"AWSPENDING"}, l[token(t, v4.RunID)])
	require.NotContains(t, l[token(t, v3.RunID)], "AWSPENDING")
}

// TestNoCredentials runs New on the SDK's default chain with nothing to
// find: no environment, no profile, no instance metadata. Not parallel: it
// changes the environment.
func TestNoCredentials(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	// Without a region New refuses at once.
	_, err := awssm.New(t.Context(), awssm.Config{Spec: &policy.AWSSMSpec{}})
	require.ErrorContains(t, err, "no AWS region")

	s, err := awssm.New(t.Context(), awssm.Config{Spec: &policy.AWSSMSpec{Region: "eu-west-1", Endpoint: closedEndpoint(t)}})
	require.NoError(t, err, "New does not call AWS")
	_, err = s.Describe(t.Context(), rotation.DescribeRequest{Path: "app/db"})
	t.Log(err)
	require.ErrorIs(t, err, awssm.ErrNoCredentials)
	require.True(t, rotation.IsPermanent(err))
	for _, want := range []string{"AWS_ACCESS_KEY_ID", "profile", "IRSA", "instance role", "app/db"} {
		require.Contains(t, err.Error(), want)
	}
}

// closedEndpoint returns a loopback URL nothing listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

func TestUnreachableEndpoint(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	cfg := e.cfg
	cfg.RetryMaxAttempts = 1
	endpoint := closedEndpoint(t)
	s, err := awssm.New(t.Context(), awssm.Config{Spec: &policy.AWSSMSpec{Region: "eu-west-1", Endpoint: endpoint}, AWS: &cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = s.Describe(ctx, rotation.DescribeRequest{Path: "app/db"})
	t.Log(err)
	require.ErrorIs(t, err, awssm.ErrUnreachable)
	require.False(t, rotation.IsPermanent(err), "a network failure is worth a retry")
	require.Contains(t, err.Error(), endpoint)
}

func TestReadOfForeignValue(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	s, name := e.store(t, nil), e.name(t)
	value := "plain-" + randomHex(16)
	_, err := e.client.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
	require.NoError(t, err)

	_, err = s.Read(t.Context(), rotation.ReadRequest{Path: name})
	require.Error(t, err)
	require.NotContains(t, err.Error(), value)
	require.Contains(t, err.Error(), "not a JSON object")

	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	require.NoError(t, err, "Describe reports a version it did not write")
	require.NotNil(t, d.Current)
	require.Empty(t, d.Current.RunID)
	require.False(t, d.Current.RotatedAt.IsZero(), "its age is its creation date")
	require.NotContains(t, strings.Join([]string{d.Current.Fingerprint, d.Current.Username}, " "), value)

	// The first rotation publishes over it, keeping it as previous.
	v1 := storetest.Version(t, 1, storetest.RunID())
	publish(t, s, name, v1)
	d, err = s.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	require.NoError(t, err)
	require.Equal(t, v1.RunID, d.Current.RunID)
	require.NotNil(t, d.Previous)
}

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct{ run, want string }{
		{"0b6e5a2c-3f4d-4e1a-9b7c-8d9e0f1a2b3c", "0b6e5a2c-3f4d-4e1a-9b7c-8d9e0f1a2b3c"},
		{"0B6E5A2C-3F4D-4E1A-9B7C-8D9E0F1A2B3C", "0b6e5a2c-3f4d-4e1a-9b7c-8d9e0f1a2b3c"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, token(t, tc.run))
	}
	a, b := token(t, "run-42"), token(t, "run-42")
	require.Equal(t, a, b, "deterministic")
	// Pinned: a changed mapping would give a retried publish a second
	// version (Python: uuid.uuid5(UUID("6b1f0c52-8e3a-4d1b-9f45-2e770ac35d91"), "run-42")).
	require.Equal(t, "6343f227-a8ae-5ae4-a60a-38e17fdbbcfe", a)
	require.Len(t, a, 36)
	require.Equal(t, byte('5'), a[14], "UUID version 5")
	require.NotEqual(t, a, token(t, "run-43"))
	_, err := awssm.Token("")
	require.Error(t, err)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	tests := []struct {
		name string
		spec *policy.AWSSMSpec
		want string // "" = valid
	}{
		{"empty", &policy.AWSSMSpec{}, ""},
		{"full", &policy.AWSSMSpec{Region: "eu-west-1", Endpoint: "https://vpce.example:443", KMSKeyID: "alias/x",
			Tags: map[string]string{"team": "a"}}, ""},
		{"nil", nil, "no store spec"},
		{"region", &policy.AWSSMSpec{Region: "Europe"}, "not an AWS region"},
		{"endpoint", &policy.AWSSMSpec{Endpoint: "secretsmanager.local"}, "not an http(s) URL"},
		{"kms", &policy.AWSSMSpec{KMSKeyID: "alias/a b"}, "kms_key_id"},
		{"reserved tag", &policy.AWSSMSpec{Tags: map[string]string{"aws:x": "1"}}, "reserved"},
		{"managed-by", &policy.AWSSMSpec{Tags: map[string]string{"managed-by": "me"}}, "set by rotator"},
		{"long value", &policy.AWSSMSpec{Tags: map[string]string{"k": long}}, "longer than 256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := awssm.Validate(tc.spec)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			_, nerr := awssm.New(t.Context(), awssm.Config{Spec: tc.spec})
			require.Error(t, nerr, "New validates too")
		})
	}
}

// TestAccessDenied answers every call the way Secrets Manager answers a
// caller IAM refuses (moto does not enforce IAM by default).
func TestAccessDenied(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-Errortype", "AccessDeniedException")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::123456789012:user/ci is not authorized to perform: secretsmanager:%s on resource: app/db because no identity-based policy allows the secretsmanager:%s action"}`, op, op)
	}))
	t.Cleanup(srv.Close)
	awsCfg := mototest.Config(srv.URL)
	s, err := awssm.New(t.Context(), awssm.Config{Spec: &policy.AWSSMSpec{}, AWS: &awsCfg})
	require.NoError(t, err)
	v1 := storetest.Version(t, 1, storetest.RunID())
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: "app/db", Version: v1})
	t.Log(err)
	require.ErrorIs(t, err, awssm.ErrAccessDenied)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "secretsmanager:DescribeSecret on the secret in us-east-1 was refused")
	require.Contains(t, err.Error(), `"app/db"`)
	requireNoSecret(t, err, v1)
}

// TestStalePublishRaceRefusedByAWS: another writer makes its version
// current between the store's compare and its label move; AWS refuses the
// move (RemoveFromVersionId no longer holds AWSCURRENT) and the store
// reports the refusal as ErrStoreMoved, naming both run ids.
func TestStalePublishRaceRefusedByAWS(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	name := e.name(t)
	a, b := e.store(t, nil), e.store(t, nil)
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	require.NoError(t, a.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v1}))
	raced := false
	awssm.SetBeforeMove(a, func() {
		if raced {
			return
		}
		raced = true
		require.NoError(t, b.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v2, Expect: &rotation.Expect{RunID: v1.RunID}}))
	})
	err := a.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v3, Expect: &rotation.Expect{RunID: v1.RunID}})
	require.True(t, raced)
	require.ErrorIs(t, err, rotation.ErrStoreMoved)
	require.True(t, rotation.IsPermanent(err))
	require.ErrorContains(t, err, v1.RunID)
	require.ErrorContains(t, err, v2.RunID)
	require.NotContains(t, err.Error(), v3.Credential.Secret.Reveal())
	d, err := a.Describe(t.Context(), rotation.DescribeRequest{Path: name})
	require.NoError(t, err)
	require.Equal(t, v2.RunID, d.Current.RunID, "the other writer's version stays current")
	require.Equal(t, v1.RunID, d.Previous.RunID, "previous is intact")
}

// TestDiscardRestoresPreviousLabel: after a failed run's publish is put
// back, AWSPREVIOUS is on the version that held it before, and the
// bookkeeping label follows the next publish.
func TestDiscardRestoresPreviousLabel(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	name := e.name(t)
	s := e.store(t, nil)
	v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
	for _, v := range []rotation.Version{v1, v2, v3} {
		require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v}))
	}
	tok := func(v rotation.Version) string { k, err := awssm.Token(v.RunID); require.NoError(t, err); return k }
	require.Contains(t, e.labels(t, name)[tok(v1)], awssm.LabelPriorPrevious, "publish of v3 recorded v1 as the prior previous")
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: name, RunID: v3.RunID, Discard: true}))
	l := e.labels(t, name)
	require.ElementsMatch(t, []string{awssm.LabelCurrent}, l[tok(v2)])
	require.Contains(t, l[tok(v1)], awssm.LabelPrevious)
	require.NotContains(t, l[tok(v3)], awssm.LabelPrevious, "the discarded version is not previous")
	require.NotContains(t, l[tok(v3)], awssm.LabelCurrent)
}

// TestReadAfterClosedConnection: a read whose response body is cut by a
// locally closed connection is sent once more (a read is idempotent), so
// a publish and a read see the store as it is; a write so cut is not
// resent by the store.
func TestReadAfterClosedConnection(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	name := e.name(t)
	plain := e.store(t, nil)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, plain, name, v1)

	cut := mototest.NewCutAnswers()
	cut.Cut("DescribeSecret", 1, 0)
	cut.Cut("GetSecretValue", 1, 0)
	// The store's own behaviour: the SDK retries nothing (the tests'
	// configuration would retry this very cut).
	s := e.storeVia(t, cut, func() aws.Retryer { return aws.NopRetryer{} })

	got, err := s.Read(t.Context(), rotation.ReadRequest{Path: name, Which: rotation.Current})
	require.NoError(t, err, "a read cut once is sent again")
	require.Equal(t, v1.Credential.Secret.Reveal(), got.Credential.Secret.Reveal())
	require.Equal(t, 2, cut.Sent("GetSecretValue"), "the cut read was sent twice")
	require.GreaterOrEqual(t, cut.Sent("DescribeSecret"), 2, "the cut describe was sent twice")

	cut.Cut("PutSecretValue", 1, 0)
	err = s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v2})
	require.Error(t, err, "a write whose answer was cut is reported, not resent by the store")
	require.ErrorIs(t, err, net.ErrClosed)
	require.Equal(t, 1, cut.Sent("PutSecretValue"))
	requireNoSecret(t, err, v1, v2)
}

// TestCutLabelMoveResentByTheSDK: the SDK's default retryer (what rotator
// runs with) sends a call again when its answer was cut, writes included.
// When the cut answer was an UpdateSecretVersionStage that landed, the
// resent call names a version the label has just left, and AWS refuses
// it. Publish and rollback must still succeed (a publish with an
// expectation must not report the store moved by someone else: the
// version current is this run's), and leave the labels as without the
// cut. Every label move of a publish, and of a discarding rollback, is cut
// in turn.
func TestCutLabelMoveResentByTheSDK(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	const op = "UpdateSecretVersionStage"
	name := e.name(t)
	plain := e.store(t, nil)
	cut := mototest.NewCutAnswers()
	s := e.storeVia(t, cut, nil) // the SDK's default retryer, as in production
	// arm cuts the answer of the n-th (from 1) label move from now on and
	// returns a func that checks the cut was made and the call sent again.
	arm := func(n int) func() {
		before := cut.Sent(op)
		cut.Cut(op, 1, n-1)
		return func() {
			require.Zero(t, cut.Armed(op), "move %d was made and cut", n)
			require.Greater(t, cut.Sent(op), before+n, "the SDK sent the cut move again")
			cut.Cut(op, 0, 0)
		}
	}
	runOf := func(w rotation.Which) string {
		v, err := plain.Read(t.Context(), rotation.ReadRequest{Path: name, Which: w})
		require.NoError(t, err)
		return v.RunID
	}

	prev := storetest.Version(t, 1, storetest.RunID())
	publish(t, plain, name, prev)
	// A publish over a published version moves ROTATOR_PRIOR_PREVIOUS
	// (once there is a previous), AWSCURRENT, then takes AWSPENDING off:
	// the second publish's AWSCURRENT move, the third's, the fourth's
	// ROTATOR_PRIOR_PREVIOUS move and the fifth's AWSPENDING removal are
	// cut. (Not the third's ROTATOR_PRIOR_PREVIOUS move: it is the label's
	// first, without RemoveFromVersionId, and moto attaches a label sent
	// twice so twice, where AWS keeps a label on one version.)
	for i, n := range []int{1, 2, 1, 3} {
		v := storetest.Version(t, int64(i+2), storetest.RunID())
		done := arm(n)
		err := s.Publish(t.Context(), rotation.PublishRequest{Path: name, Version: v, Expect: &rotation.Expect{RunID: prev.RunID}})
		require.NoError(t, err, "publish %d, move %d cut: the move landed, its resend moved nothing", i+2, n)
		done()
		require.Equal(t, v.RunID, runOf(rotation.Current), "this run's version is current")
		require.Equal(t, prev.RunID, runOf(rotation.Previous), "the version it replaced is previous")
		prev = v
	}
	// The last publish is rolled back as failed (discarded): AWSCURRENT
	// goes back, then AWSPREVIOUS goes back to the version before.
	before := runOf(rotation.Previous)
	last := prev
	for _, n := range []int{1, 2} {
		v := storetest.Version(t, last.Number+1, storetest.RunID())
		publish(t, plain, name, v)
		done := arm(n)
		err := s.Rollback(t.Context(), rotation.RollbackRequest{Path: name, RunID: v.RunID, Discard: true, Expect: &rotation.Expect{RunID: last.RunID}})
		require.NoError(t, err, "rollback, move %d cut", n)
		done()
		require.Equal(t, last.RunID, runOf(rotation.Current), "the version before is current again")
		require.Equal(t, before, runOf(rotation.Previous), "previous is what it was before the discarded publish")
	}
}

// denyTagResource answers TagResource as Secrets Manager answers a call
// the caller's policy does not allow, and sends every other call on.
type denyTagResource struct{ base http.RoundTripper }

func (d denyTagResource) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".TagResource") {
		body := `{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::123456789012:user/ci is not authorized to perform: secretsmanager:TagResource"}`
		h := http.Header{}
		h.Set("Content-Type", "application/x-amz-json-1.1")
		h.Set("X-Amzn-Errortype", "AccessDeniedException")
		return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Header: h,
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
	}
	return d.base.RoundTrip(r)
}

// TestDiscardWithoutTagResource: an identity without
// secretsmanager:TagResource (a policy written when it was needed only
// with create: true) cannot record the withdrawn run, and the discard
// still puts the secret back: the put back matters more than the record.
func TestDiscardWithoutTagResource(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	name := e.name(t)
	plain := e.store(t, nil)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	publish(t, plain, name, v1)
	publish(t, plain, name, v2)
	s := e.storeVia(t, denyTagResource{base: http.DefaultTransport}, nil)
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: name, RunID: v2.RunID, Discard: true}))
	got, err := plain.Read(t.Context(), rotation.ReadRequest{Path: name, Which: rotation.Current})
	require.NoError(t, err)
	require.Equal(t, v1.RunID, got.RunID, "put back without the record")
}
