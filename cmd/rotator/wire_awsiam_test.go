package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
)

// An IAM user's access keys rotated from a policies file through the CLI,
// against moto with IAM authentication enforced: each `rotator run`
// publishes a key that AWS accepts (into a file of its own and into two
// fields of a shared document), deactivates the one it replaced, and the
// next run deletes that one, which AWS then refuses.
func TestCLIRotatesAnIAMUser(t *testing.T) {
	ctx := context.Background()
	srv := mototest.NewIAMAuth(t)
	admin := iam.NewFromConfig(srv.AdminConfig())
	user := "rt-cli-app"
	k0 := srv.NewUser(t, user)
	policy := `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: aws/app
    class: api_key
    rotator:
      awsiam:
        user: ` + user + `
        region: us-east-1
        endpoint: ` + srv.URL + `
        connection: {region: us-east-1}
    publish:
      - store: local
        path: aws/app.json
      - store: local
        path: apps/ci.json
        fields: {access_key_id: AWS_ACCESS_KEY_ID, secret_access_key: AWS_SECRET_ACCESS_KEY}
    checks:
      - delay: 1s
    grace: 30s
    monitor: 0s
`
	stateDSN := pgtest.NewDatabase(t)
	e := newEnv(t, stateDSN, policy, "AWS_ACCESS_KEY_ID="+srv.AdminKeyID, "AWS_SECRET_ACCESS_KEY="+srv.AdminSecret,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	e.must("validate")
	e.must("migrate")
	read := func(path string) map[string]string {
		raw, err := os.ReadFile(filepath.Join(e.dir, "secrets", path))
		require.NoError(t, err)
		var d map[string]string
		require.NoError(t, json.Unmarshal(raw, &d))
		return d
	}
	call := func(id, sec string) error {
		_, err := sts.NewFromConfig(mototest.ConfigWithKey(srv.URL, id, sec)).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	}
	status := func(id string) types.StatusType {
		out, err := admin.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(user)})
		require.NoError(t, err)
		require.LessOrEqual(t, len(out.AccessKeyMetadata), 2)
		for _, k := range out.AccessKeyMetadata {
			if aws.ToString(k.AccessKeyId) == id {
				return k.Status
			}
		}
		return ""
	}

	out1 := e.must("run", "--secret", "aws/app")
	v1 := read("aws/app.json")
	require.Equal(t, user, v1["username"])
	require.Equal(t, "us-east-1", v1["region"])
	require.NotEqual(t, aws.ToString(k0.AccessKeyId), v1["access_key_id"])
	require.NoError(t, call(v1["access_key_id"], v1["secret_access_key"]))
	require.Equal(t, types.StatusTypeActive, status(v1["access_key_id"]))
	require.Equal(t, types.StatusTypeInactive, status(aws.ToString(k0.AccessKeyId)), "the first run deactivates the key it replaced")
	doc := read("apps/ci.json")
	require.Equal(t, v1["access_key_id"], doc["AWS_ACCESS_KEY_ID"])
	require.Equal(t, v1["secret_access_key"], doc["AWS_SECRET_ACCESS_KEY"])

	out2 := e.must("run", "--secret", "aws/app")
	v2 := read("aws/app.json")
	require.NotEqual(t, v1["access_key_id"], v2["access_key_id"])
	require.NoError(t, call(v2["access_key_id"], v2["secret_access_key"]))
	require.Equal(t, types.StatusTypeInactive, status(v1["access_key_id"]))
	require.Equal(t, types.StatusType(""), status(aws.ToString(k0.AccessKeyId)), "the second run deleted the key the first retired")
	require.Error(t, call(aws.ToString(k0.AccessKeyId), aws.ToString(k0.SecretAccessKey)), "AWS refuses the deleted key")
	require.Equal(t, v2["secret_access_key"], read("apps/ci.json")["AWS_SECRET_ACCESS_KEY"])

	chk := e.must("check")

	// A rollback re-activates the key the last run retired and publishes
	// it again; the key rolled away from stays Active for the clients that
	// hold it, so the next run refuses to delete it, and names it, until a
	// person deactivates it.
	rb := e.must("rollback", "--secret", "aws/app")
	require.Equal(t, v1["access_key_id"], read("aws/app.json")["access_key_id"])
	require.Equal(t, types.StatusTypeActive, status(v1["access_key_id"]))
	require.NoError(t, call(v1["access_key_id"], v1["secret_access_key"]))
	require.Equal(t, types.StatusTypeActive, status(v2["access_key_id"]))
	refused := e.run(nil, "run", "--secret", "aws/app")
	require.NotEqual(t, 0, refused.code, "a run beside an Active key that is not published must refuse:\n%s", refused.stdout+refused.stderr)
	require.Contains(t, refused.stdout+refused.stderr, v2["access_key_id"])
	require.Contains(t, refused.stdout+refused.stderr, "may be in use")
	require.Equal(t, types.StatusTypeActive, status(v2["access_key_id"]), "the refused run touched nothing")
	_, err := admin.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(user), AccessKeyId: aws.String(v2["access_key_id"]), Status: types.StatusTypeInactive})
	require.NoError(t, err)
	out3 := e.must("run", "--secret", "aws/app")
	v3 := read("aws/app.json")
	require.NoError(t, call(v3["access_key_id"], v3["secret_access_key"]))
	require.Equal(t, types.StatusType(""), status(v2["access_key_id"]), "the key a person deactivated was deleted")
	require.Equal(t, types.StatusTypeInactive, status(v1["access_key_id"]))

	// After four runs (one refused), a check and a rollback, neither the
	// CLI's output nor the state database holds a generated secret access
	// key or the admin's own, in any form.
	dump := stateDump(t, stateDSN)
	require.Contains(t, dump, "aws/app", "the dump holds the secret's rows")
	require.Contains(t, dump, v3["access_key_id"], "the dump holds the runs (key ids are not secret)")
	for _, s := range []string{aws.ToString(k0.SecretAccessKey), v1["secret_access_key"], v2["secret_access_key"], v3["secret_access_key"], srv.AdminSecret} {
		for _, o := range []result{out1, out2, chk, rb, refused, out3} {
			require.NotContains(t, o.stdout+o.stderr, s, "a secret access key in the CLI's output")
		}
		for _, f := range secretForms(s) {
			require.NotContains(t, dump, f, "a secret access key in the state database")
		}
	}
}

// secretForms is s as written, %-escaped, JSON-escaped, in base64 (a
// secret access key may hold / and +) and in hex (how a dump shows a
// bytea column, such as the sealed credential).
func secretForms(s string) []string {
	j, _ := json.Marshal(s)
	return []string{s, url.QueryEscape(s), url.PathEscape(s), string(j[1 : len(j)-1]),
		base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)), hex.EncodeToString([]byte(s))}
}

// A run whose publish fails after generate (one store cannot be written,
// nor put back) puts the other store back and keeps the new key valid
// (a store may serve it) while the run needs attention; the published key
// still works. Once the store is writable again, the next runs finish the
// compensation (the new key is deleted) and rotate.
func TestCLIAWSIAMFailedPublishDeletesTheNewKey(t *testing.T) {
	ctx := context.Background()
	srv := mototest.NewIAMAuth(t)
	admin := iam.NewFromConfig(srv.AdminConfig())
	user := "rt-cli-fail"
	srv.NewUser(t, user)
	policy := `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: aws/app
    class: api_key
    rotator:
      awsiam: {user: ` + user + `, region: us-east-1, endpoint: "` + srv.URL + `"}
    publish:
      - {store: local, path: aws/app.json}
      - {store: local, path: blocked/app.json}
    checks: [{delay: 1s}]
    grace: 30s
    monitor: 0s
    retry: {attempts: 2, initial: 1s, max: 1s}
`
	e := newEnv(t, pgtest.NewDatabase(t), policy, "AWS_ACCESS_KEY_ID="+srv.AdminKeyID, "AWS_SECRET_ACCESS_KEY="+srv.AdminSecret,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	e.must("migrate")
	keys := func() map[string]types.StatusType {
		out, err := admin.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(user)})
		require.NoError(t, err)
		m := map[string]types.StatusType{}
		for _, k := range out.AccessKeyMetadata {
			m[aws.ToString(k.AccessKeyId)] = k.Status
		}
		return m
	}
	read := func() map[string]string {
		raw, err := os.ReadFile(filepath.Join(e.dir, "secrets", "aws/app.json"))
		require.NoError(t, err)
		var d map[string]string
		require.NoError(t, json.Unmarshal(raw, &d))
		return d
	}
	e.must("run", "--secret", "aws/app")
	v1 := read()
	require.Len(t, keys(), 2, "the published key and the Inactive one it replaced")

	// The run stops itself after generate (ROTATOR_TEST_FAULT=stop); the
	// store's directory "blocked" becomes a file; the run goes on and
	// cannot publish there.
	cmd := exec.Command(binary, "run", "--secret", "aws/app")
	cmd.Dir, cmd.Env = e.dir, append(append([]string(nil), e.vars...), "ROTATOR_TEST_FAULT=stop:after:generate")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	r := bufio.NewReader(stderr)
	var errOut strings.Builder
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err, "the run ended before it stopped after generate:\n%s", errOut.String())
		errOut.WriteString(line)
		if strings.HasPrefix(line, "ROTATOR_TEST_FAULT stop ") {
			break
		}
	}
	require.Len(t, keys(), 2, "generate made the new key beside the published one")
	require.NoError(t, os.RemoveAll(filepath.Join(e.dir, "secrets", "blocked")))
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, "secrets", "blocked"), []byte("x"), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
	rest, _ := io.ReadAll(r)
	errOut.Write(rest)
	werr := cmd.Wait()
	failed := result{stdout: stdout.String(), stderr: errOut.String()}
	require.Error(t, werr, failed.stdout+failed.stderr)
	require.Contains(t, failed.stdout, "NEEDS ATTENTION", "the broken store cannot be put back: compensation waits for it")
	require.Equal(t, v1["access_key_id"], read()["access_key_id"], "the other store was put back")
	ks := keys()
	require.Len(t, ks, 2, "the Inactive key freed its slot; the new key stays valid while a store may serve it")
	var leftover string
	for id, st := range ks {
		require.Equal(t, types.StatusTypeActive, st)
		if id != v1["access_key_id"] {
			leftover = id
		}
	}
	_, err = sts.NewFromConfig(mototest.ConfigWithKey(srv.URL, v1["access_key_id"], v1["secret_access_key"])).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	require.NoError(t, err, "AWS accepts the published key")

	// The store is repaired: the next run finishes the compensation (the
	// new key no store publishes is deleted), and rotating goes on.
	require.NoError(t, os.Remove(filepath.Join(e.dir, "secrets", "blocked")))
	rotated := false
	for i := 0; i < 3 && !rotated; i++ {
		rotated = strings.Contains(e.run(nil, "run", "--secret", "aws/app").stdout, "aws/app: rotated")
	}
	require.True(t, rotated, "a run rotates once the store is repaired")
	require.Equal(t, types.StatusType(""), keys()[leftover], "the key of the failed run was deleted")
	v3 := read()
	require.NotEqual(t, v1["access_key_id"], v3["access_key_id"])
	require.Len(t, keys(), 2)
	_, err = sts.NewFromConfig(mototest.ConfigWithKey(srv.URL, v3["access_key_id"], v3["secret_access_key"])).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	require.NoError(t, err)
}

// TestCLIAWSIAMRedactsSharedFileCredentials: rotator's own AWS key from
// the shared credentials file, through a credential_process, never shows:
// the SDK quotes the whole output of a credential process it cannot parse
// in its error, and rotator withholds that error (internal/awscreds). The
// process answers output the SDK cannot parse (an Expiration that is no
// time), holding the key, either at once ("first": rotator never had the
// key to redact it) or when the key, answered valid and already expired
// the first time, is refreshed for the first IAM call ("refresh"). The
// run fails and says why; neither the CLI's output, history nor the state
// database holds the key, in any form.
func TestCLIAWSIAMRedactsSharedFileCredentials(t *testing.T) {
	srv := mototest.NewIAMAuth(t)
	user := "rt-cli-shared"
	srv.NewUser(t, user)
	good, err := json.Marshal(map[string]any{"Version": 1, "AccessKeyId": srv.AdminKeyID, "SecretAccessKey": srv.AdminSecret, "Expiration": "2000-01-01T00:00:00Z"})
	require.NoError(t, err)
	bad, err := json.Marshal(map[string]any{"Version": 1, "AccessKeyId": srv.AdminKeyID, "SecretAccessKey": srv.AdminSecret, "Expiration": "in an hour"})
	require.NoError(t, err)

	for _, c := range []struct{ name, first string }{{"first", string(bad)}, {"refresh", string(good)}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			calls := filepath.Join(dir, "calls")
			script := filepath.Join(dir, "creds.sh")
			require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n"+
				"if [ -e '"+calls+"' ]; then echo '"+string(bad)+"'; else touch '"+calls+"'; echo '"+c.first+"'; fi\n"), 0o700))
			credentials := filepath.Join(dir, "credentials")
			require.NoError(t, os.WriteFile(credentials, []byte("[default]\ncredential_process = "+script+"\n"), 0o600))

			policy := `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: aws/app
    class: api_key
    rotator:
      awsiam: {user: ` + user + `, region: us-east-1, endpoint: "` + srv.URL + `"}
    publish:
      - {store: local, path: aws/app.json}
    checks: [{delay: 1s}]
    retry: {attempts: 1}
`
			stateDSN := pgtest.NewDatabase(t)
			e := newEnv(t, stateDSN, policy, "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
				"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE="+credentials)
			e.must("migrate")
			r := e.run(nil, "run", "--secret", "aws/app")
			out := r.stdout + r.stderr
			require.NotEqual(t, 0, r.code, out)
			require.Contains(t, out, "credential_process answered output the AWS SDK cannot parse", "the run failed on the process's answer, and says so")
			hist := e.must("history", "--secret", "aws/app")
			dump := stateDump(t, stateDSN)
			require.Contains(t, dump, "credential_process answered output", "the journal holds the error")
			for _, f := range secretForms(srv.AdminSecret) {
				require.NotContains(t, out, f, "rotator's own secret access key in the CLI's output")
				require.NotContains(t, hist.stdout+hist.stderr, f, "rotator's own secret access key in history")
				require.NotContains(t, dump, f, "rotator's own secret access key in the state database")
			}
		})
	}
}
