package awsiam_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/awsiam"
)

// shared is the test binary's moto_server with IAM authentication
// enforced; tests use users of their own.
var shared struct {
	once sync.Once
	srv  *mototest.IAMAuth
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		_ = shared.srv.Close()
	}
	os.Exit(code)
}

func server(t *testing.T) *mototest.IAMAuth {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = mototest.StartIAMAuth() })
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.srv
}

func admin(t *testing.T) *iam.Client { return iam.NewFromConfig(server(t).AdminConfig()) }

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// newUser creates an IAM user of the test's own with keys access keys
// (returned) and deletes it at cleanup.
func newUser(t *testing.T, keys int) (string, []rotation.Credential) {
	t.Helper()
	ctx := context.Background()
	a := admin(t)
	name := "rt-" + randHex(t, 6)
	_, err := a.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
	require.NoError(t, err)
	t.Cleanup(func() {
		out, _ := a.ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: aws.String(name)})
		if out != nil {
			for _, k := range out.AccessKeyMetadata {
				_, _ = a.DeleteAccessKey(context.Background(), &iam.DeleteAccessKeyInput{UserName: aws.String(name), AccessKeyId: k.AccessKeyId})
			}
		}
		_, _ = a.DeleteUser(context.Background(), &iam.DeleteUserInput{UserName: aws.String(name)})
	})
	var out []rotation.Credential
	for range keys {
		out = append(out, createKey(t, name))
	}
	return name, out
}

// createKey creates an access key for user by hand (a person, or a
// crashed earlier try).
func createKey(t *testing.T, user string) rotation.Credential {
	t.Helper()
	k, err := admin(t).CreateAccessKey(context.Background(), &iam.CreateAccessKeyInput{UserName: aws.String(user)})
	require.NoError(t, err)
	return credential(user, aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey))
}

func credential(user, id, sec string) rotation.Credential {
	return rotation.Credential{Username: user, KeyID: id, Field: policy.AWSIAMSecretField, Secret: secret.New(sec)}
}

// newRotator builds a rotator for user as the admin.
func newRotator(t *testing.T, user string, mod ...func(*awsiam.Config)) *awsiam.Rotator {
	t.Helper()
	ac := server(t).AdminConfig()
	wait := policy.Duration(2 * time.Second)
	cfg := awsiam.Config{Spec: &policy.AWSIAMSpec{User: user, NewKeyWait: &wait, Connection: map[string]string{"region": "us-east-1"}},
		AWS: &ac, Retry: 100 * time.Millisecond}
	for _, f := range mod {
		f(&cfg)
	}
	r, err := awsiam.New(context.Background(), cfg)
	require.NoError(t, err)
	return r
}

// callAWS uses the key as a client would: sts:GetCallerIdentity signed
// with it. moto refuses a deleted (or unknown) key, as AWS does.
func callAWS(t *testing.T, c rotation.Credential) error {
	t.Helper()
	cfg := mototest.ConfigWithKey(server(t).URL, c.KeyID, c.Secret.Reveal())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	return err
}

// refused says whether AWS (moto) refused a call for its credentials.
func refused(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 403
}

// login is what AWS would answer a client using c: moto's answer for a
// deleted or unknown key, and, because moto accepts an Inactive key where
// AWS refuses it, the key's status as IAM lists it.
func login(t *testing.T, c rotation.Credential) error {
	t.Helper()
	if err := callAWS(t, c); err != nil {
		return err
	}
	switch s := status(t, c.Username, c.KeyID); s {
	case types.StatusTypeActive:
		return nil
	case "":
		return errors.New("key " + c.KeyID + " is not a key of " + c.Username)
	default:
		return errors.New("key " + c.KeyID + " is " + string(s) + ": AWS refuses it (moto does not)")
	}
}

// status is the key's status as IAM lists it ("" when it is not there).
func status(t *testing.T, user, id string) types.StatusType {
	t.Helper()
	for _, k := range keys(t, user) {
		if aws.ToString(k.AccessKeyId) == id {
			return k.Status
		}
	}
	return ""
}

func keys(t *testing.T, user string) []types.AccessKeyMetadata {
	t.Helper()
	out, err := admin(t).ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: aws.String(user)})
	require.NoError(t, err)
	return out.AccessKeyMetadata
}

func tag(t *testing.T, user, k, v string) {
	t.Helper()
	_, err := admin(t).TagUser(context.Background(), &iam.TagUserInput{UserName: aws.String(user), Tags: []types.Tag{{Key: aws.String(k), Value: aws.String(v)}}})
	require.NoError(t, err)
}
