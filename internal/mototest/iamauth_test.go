package mototest_test

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
)

// TestIAMAuthModel pins what moto's IAM authentication does and does not
// model, as IAMAuth's doc (and rotators/awsiam's) says: if a moto upgrade
// changes one of these, this test fails and the docs must change with it.
func TestIAMAuthModel(t *testing.T) {
	t.Parallel()
	s := mototest.NewIAMAuth(t)
	ctx := t.Context()
	admin := iam.NewFromConfig(s.AdminConfig())

	_, err := sts.NewFromConfig(s.AWSConfig()).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	requireCode(t, err, "InvalidClientTokenId", "a key moto does not know is refused")

	_, err = admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("app")})
	require.NoError(t, err)
	k, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("app")})
	require.NoError(t, err)
	id, sec := aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey)
	app := mototest.ConfigWithKey(s.URL, id, sec)

	lu, err := admin.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(id)})
	require.NoError(t, err)
	require.Nil(t, lu.AccessKeyLastUsed.LastUsedDate, "a new key was never used")

	who, err := sts.NewFromConfig(app).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	require.NoError(t, err, "GetCallerIdentity needs no permission")
	require.Contains(t, aws.ToString(who.Arn), ":user/app")
	_, err = iam.NewFromConfig(app).GetUser(ctx, &iam.GetUserInput{})
	requireCode(t, err, "AccessDenied", "a call the user's policies do not allow")

	lu, err = admin.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(id)})
	require.NoError(t, err)
	require.NotNil(t, lu.AccessKeyLastUsed.LastUsedDate, "moto records a key's last use at once")

	// Not modelled: an Inactive key is accepted.
	_, err = admin.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("app"), AccessKeyId: aws.String(id), Status: types.StatusTypeInactive})
	require.NoError(t, err)
	_, err = sts.NewFromConfig(app).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	require.NoError(t, err, "moto accepts an Inactive key (AWS refuses it): if this fails, moto now models it; update the docs")

	// Not modelled: a statement naming a resource ARN allows nothing.
	_, err = admin.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("app"), PolicyName: aws.String("own-keys"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:ListAccessKeys","Resource":"arn:aws:iam::123456789012:user/app"}]}`)})
	require.NoError(t, err)
	_, err = iam.NewFromConfig(app).ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("app")})
	requireCode(t, err, "AccessDenied", "moto matches only Resource \"*\": if this passes, moto now matches ARNs; update the docs")

	_, err = admin.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("app"), AccessKeyId: aws.String(id)})
	require.NoError(t, err)
	_, err = sts.NewFromConfig(app).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	requireCode(t, err, "InvalidClientTokenId", "a deleted key is refused")
}

// requireCode checks that AWS refused err's call with code, and HTTP 403.
// moto wraps a query protocol error in <Errors>, which the SDK's STS
// parser does not read (it reports UnknownError): there only the 403 is
// checked.
func requireCode(t *testing.T, err error, code, what string) {
	t.Helper()
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re), "%s: want %s, got %v", what, code, err)
	require.Equal(t, 403, re.HTTPStatusCode(), "%s: %v", what, err)
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "%s: want %s, got %v", what, code, err)
	if ae.ErrorCode() != "UnknownError" {
		require.Equal(t, code, ae.ErrorCode(), "%s: %v", what, err)
	}
}
