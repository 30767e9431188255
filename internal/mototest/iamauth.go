package mototest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// AdminUser is the IAM user StartIAMAuth creates with every permission.
const AdminUser = "mototest-admin"

// bootstrapCalls is how many AWS calls StartIAMAuth makes before moto
// enforces authentication: CreateUser, PutUserPolicy, CreateAccessKey.
// moto counts the calls that go through its authorizer; its own
// /moto-api/ endpoints (the readiness probe, reset) do not count.
const bootstrapCalls = 3

// IAMAuth is a moto_server that checks every AWS call's signature against
// the access keys its IAM holds and the caller's IAM policies, as AWS
// does: a request signed with a key that does not exist (deleted, or
// never created) is refused with InvalidClientTokenId, one the caller's
// policies do not allow with AccessDenied.
//
// What moto 5 does not model (checked by TestIAMAuthModel): it accepts an
// Inactive key as if it were Active; it matches only "Resource": "*" in
// identity policies (a statement naming an ARN allows nothing) and
// ignores Condition; keys are usable the moment CreateAccessKey answers
// (AWS is eventually consistent: a new key may be refused for seconds,
// and a deactivated one accepted). It does record each key's last use
// (GetAccessKeyLastUsed), at once, where AWS takes up to hours.
type IAMAuth struct {
	*Server
	// AdminKeyID and AdminSecret are the access key of AdminUser, whose
	// inline policy allows every action.
	AdminKeyID, AdminSecret string
}

// StartIAMAuth starts moto_server with INITIAL_NO_AUTH_ACTION_COUNT set
// so that it enforces IAM authentication after bootstrapping AdminUser,
// then checks that it does: a call with the dummy credentials of Config
// must be refused.
func StartIAMAuth() (*IAMAuth, error) {
	s, err := StartWith(Options{Env: []string{"INITIAL_NO_AUTH_ACTION_COUNT=" + strconv.Itoa(bootstrapCalls)}})
	if err != nil {
		return nil, err
	}
	a, err := bootstrap(s)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return a, nil
}

func bootstrap(s *Server) (*IAMAuth, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	anon := iam.NewFromConfig(s.AWSConfig())
	if _, err := anon.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(AdminUser)}); err != nil {
		return nil, fmt.Errorf("mototest: bootstrap %s: %w", AdminUser, err)
	}
	if _, err := anon.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(AdminUser), PolicyName: aws.String("all"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)}); err != nil {
		return nil, fmt.Errorf("mototest: bootstrap %s: %w", AdminUser, err)
	}
	k, err := anon.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(AdminUser)})
	if err != nil {
		return nil, fmt.Errorf("mototest: bootstrap %s: %w", AdminUser, err)
	}
	a := &IAMAuth{Server: s, AdminKeyID: aws.ToString(k.AccessKey.AccessKeyId), AdminSecret: aws.ToString(k.AccessKey.SecretAccessKey)}
	if _, err := anon.ListUsers(ctx, &iam.ListUsersInput{}); err == nil {
		return nil, errors.New("mototest: moto_server accepted a call with credentials it does not know after INITIAL_NO_AUTH_ACTION_COUNT: it does not enforce IAM authentication")
	}
	if _, err := iam.NewFromConfig(a.AdminConfig()).ListUsers(ctx, &iam.ListUsersInput{}); err != nil {
		return nil, fmt.Errorf("mototest: the admin key is refused: %w", err)
	}
	return a, nil
}

// NewIAMAuth starts an IAMAuth server of the test's own and kills it at
// cleanup.
func NewIAMAuth(t testing.TB) *IAMAuth {
	t.Helper()
	a, err := StartIAMAuth()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Logf("%v", err)
		}
	})
	return a
}

// AdminConfig is Config signed with AdminUser's key.
func (a *IAMAuth) AdminConfig() aws.Config { return ConfigWithKey(a.URL, a.AdminKeyID, a.AdminSecret) }

// ConfigWithKey is Config signed with the access key id and secret given.
func ConfigWithKey(url, keyID, secret string) aws.Config {
	c := Config(url)
	c.Credentials = aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, Source: "mototest"}, nil
	}))
	return c
}

// NewUser creates the IAM user name with one access key, as an
// application's user holds before rotator manages it, and returns that
// key. It fails the test when the server refuses.
func (a *IAMAuth) NewUser(t testing.TB, name string) *iamtypes.AccessKey {
	t.Helper()
	admin := iam.NewFromConfig(a.AdminConfig())
	_, err := admin.CreateUser(context.Background(), &iam.CreateUserInput{UserName: aws.String(name)})
	if err != nil {
		t.Fatalf("mototest: create IAM user %s: %v", name, err)
	}
	k, err := admin.CreateAccessKey(context.Background(), &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		t.Fatalf("mototest: create an access key of %s: %v", name, err)
	}
	return k.AccessKey
}
