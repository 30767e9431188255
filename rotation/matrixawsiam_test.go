package rotation_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/awsiam"
)

// matrixAWSIAM is the failure-path matrix's mode for AWS IAM access keys:
// an IAM user of the cell's own on moto with IAM authentication enforced
// (matrixServers.iamServer), without keys at first (the first good run
// creates its first key).
const matrixAWSIAM = "awsiam"

// awsIAMMatrixKind is an IAM user's access keys. A key works when AWS
// accepts it (moto refuses a deleted key) and IAM lists it Active (AWS
// refuses an Inactive key; moto does not); what can log in is the user's
// Active keys, by key id.
type awsIAMMatrixKind struct {
	t     *testing.T
	admin *iam.Client
	user  string
	r     *awsiam.Rotator
}

func newAWSIAMMatrixKind(t *testing.T, srv *mototest.IAMAuth, logger *slog.Logger) (matrixKind, rotation.Rotator) {
	t.Helper()
	ac := srv.AdminConfig()
	k := &awsIAMMatrixKind{t: t, admin: iam.NewFromConfig(ac), user: fmt.Sprintf("matrix-%s", matrixRand())}
	_, err := k.admin.CreateUser(context.Background(), &iam.CreateUserInput{UserName: aws.String(k.user)})
	require.NoError(t, err)
	wait := policy.Duration(2 * time.Second)
	k.r, err = awsiam.New(context.Background(), awsiam.Config{Spec: &policy.AWSIAMSpec{User: k.user, NewKeyWait: &wait},
		AWS: &ac, Logger: logger, Retry: 100 * time.Millisecond})
	require.NoError(t, err)
	return k, k.r
}

func (k *awsIAMMatrixKind) works(c rotation.Credential) error {
	return k.r.Test(context.Background(), rotation.TestRequest{SecretID: "db/postgres", Credential: c})
}

func (*awsIAMMatrixKind) ident(c rotation.Credential) string { return c.KeyID }

func (*awsIAMMatrixKind) original() string { return "" }

// live lists the user's Active keys; the user never holds more than two.
func (k *awsIAMMatrixKind) live() []string {
	k.t.Helper()
	out, err := k.admin.ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: aws.String(k.user)})
	require.NoError(k.t, err)
	require.LessOrEqual(k.t, len(out.AccessKeyMetadata), 2, "IAM user %s holds at most two keys", k.user)
	var ids []string
	for _, m := range out.AccessKeyMetadata {
		if m.Status == types.StatusTypeActive {
			ids = append(ids, aws.ToString(m.AccessKeyId))
		}
	}
	slices.Sort(ids)
	return ids
}
