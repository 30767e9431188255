package deploy_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
)

// awsIAMPolicy is deploy/aws/rotator-awsiam-policy.json, decoded.
type awsIAMPolicy struct {
	Version   string `json:"Version"`
	Statement []struct {
		Sid      string   `json:"Sid"`
		Effect   string   `json:"Effect"`
		Action   []string `json:"Action"`
		Resource string   `json:"Resource"`
	} `json:"Statement"`
}

func readAWSIAMPolicy(t *testing.T) (awsIAMPolicy, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("aws", "rotator-awsiam-policy.json"))
	require.NoError(t, err)
	var doc awsIAMPolicy
	require.NoError(t, strictJSON(data, &doc))
	return doc, data
}

// deploy/aws/rotator-awsiam-policy.json allows exactly the IAM actions
// rotators/awsiam documents, on users under one path, with no wildcard
// action.
func TestAWSIAMPolicyMatchesRotator(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "rotators", "awsiam", "doc.go"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(src), "// # Required IAM actions")
	require.True(t, ok, "rotators/awsiam/doc.go has a \"# Required IAM actions\" section")
	section, _, _ = strings.Cut(section, "\n// # ")
	var want []string
	for _, m := range regexp.MustCompile(`\biam:[A-Z][A-Za-z]+\b`).FindAllString(section, -1) {
		want = append(want, m)
	}
	require.NotEmpty(t, want)
	doc, _ := readAWSIAMPolicy(t)
	require.Equal(t, "2012-10-17", doc.Version)
	var got []string
	for _, s := range doc.Statement {
		require.Equal(t, "Allow", s.Effect, s.Sid)
		require.Regexp(t, `^arn:aws:iam::\d{12}:user/[A-Za-z0-9+=,.@_-][A-Za-z0-9+=,.@_/-]*\*?$`, s.Resource, "%s: users, not *", s.Sid)
		for _, a := range s.Action {
			require.NotContains(t, a, "*", "%s: no wildcard actions", s.Sid)
			got = append(got, a)
		}
	}
	require.ElementsMatch(t, want, got, "iam actions: rotators/awsiam/doc.go vs rotator-awsiam-policy.json")
}

// The policy is enough, and each of its actions is needed: rotator runs
// as an IAM user that has only that policy, against moto with IAM
// authentication enforced, through the CLI. moto matches identity
// policies only with "Resource": "*" (internal/mototest.IAMAuth), so the
// statements are granted on "*" here: the actions are tested, the
// resource scoping is not.
func TestAWSIAMPolicyIsEnoughAndEachActionNeeded(t *testing.T) {
	srv := mototest.NewIAMAuth(t)
	ctx := context.Background()
	admin := iam.NewFromConfig(srv.AdminConfig())
	doc, _ := readAWSIAMPolicy(t)
	stateDSN := pgtest.NewDatabase(t)
	var actions []string
	for _, s := range doc.Statement {
		actions = append(actions, s.Action...)
	}
	// A rotator user with the policy minus drop ("" drops nothing), and a
	// rotated user under /rotated/ with the key clients use today.
	try := func(name, drop string) (int, string) {
		t.Helper()
		var keep []string
		for _, a := range actions {
			if a != drop {
				keep = append(keep, a)
			}
		}
		pol, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": []map[string]any{{"Effect": "Allow", "Action": keep, "Resource": "*"}}})
		require.NoError(t, err)
		rot := "rotator-" + name
		_, err = admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(rot)})
		require.NoError(t, err)
		_, err = admin.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(rot), PolicyName: aws.String("rotator"), PolicyDocument: aws.String(string(pol))})
		require.NoError(t, err)
		rk, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(rot)})
		require.NoError(t, err)
		app := "app-" + name
		_, err = admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(app), Path: aws.String("/rotated/")})
		require.NoError(t, err)
		k0, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(app)})
		require.NoError(t, err)
		// The clients use it: IAM records its last use.
		_, err = sts.NewFromConfig(mototest.ConfigWithKey(srv.URL, aws.ToString(k0.AccessKey.AccessKeyId), aws.ToString(k0.AccessKey.SecretAccessKey))).
			GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		require.NoError(t, err)
		policy := `version: 1
stores: [{name: local, files: {dir: secrets}}]
secrets:
  - id: aws/` + name + `
    class: api_key
    rotator: {awsiam: {user: ` + app + `, region: us-east-1, endpoint: "` + srv.URL + `"}}
    publish: [{store: local, path: aws.json}]
    checks: [{last_used: {unused_for: 1s, interval: 1s}}]
    grace: 20s
    monitor: 0s
    retry: {attempts: 1}
`
		dir := t.TempDir()
		env := clitest.Setup(t, binary, dir, stateDSN, policy, "AWS_ACCESS_KEY_ID="+aws.ToString(rk.AccessKey.AccessKeyId),
			"AWS_SECRET_ACCESS_KEY="+aws.ToString(rk.AccessKey.SecretAccessKey), "AWS_EC2_METADATA_DISABLED=true",
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		if code, out := run(t, dir, env, "migrate"); code != 0 {
			t.Fatalf("migrate: %s", out)
		}
		var all string
		for range 2 { // the second run deletes the key the first retired
			code, out := run(t, dir, env, "run", "--secret", "aws/"+name)
			all += out
			if code != 0 || !strings.Contains(out, "rotated") {
				return code, all
			}
		}
		code, out := run(t, dir, env, "check")
		return code, all + out
	}
	code, out := try("all", "")
	require.Equal(t, 0, code, "with the whole policy: %s", out)
	for i, a := range actions {
		code, out := try("without-"+strings.ToLower(strings.TrimPrefix(a, "iam:"))+"-"+string(rune('a'+i)), a)
		require.False(t, code == 0 && strings.Count(out, "rotated") >= 2, "without %s rotator still rotated twice: the action is not needed\n%s", a, out)
		require.Contains(t, out, strings.TrimPrefix(a, "iam:"), "without %s, the failure names it", a)
	}
}
