package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// A static key and session token from the shared credentials file reach
// the redaction of every target the wiring builds once it has an AWS
// client (an awsiam rotator, an awssm store), in the forms the
// environment's key is redacted in: as written, %-escaped, JSON-escaped.
// No AWS call is made: the static key needs none.
func TestTargetRedactsSharedFileCredentials(t *testing.T) {
	const keySecret = `sh4red/F1le+Secret"Key/0123456789abcdefghij`
	const token = `Sess10n/Token+from"the/shared+file==`
	creds := filepath.Join(t.TempDir(), "credentials")
	require.NoError(t, os.WriteFile(creds, []byte("[default]\naws_access_key_id = AKIASHAREDFILE000001\n"+
		"aws_secret_access_key = "+keySecret+"\naws_session_token = "+token+"\n"), 0o600))
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)

	const pol = `stores:
  - {name: local, files: {dir: out}}
  - {name: sm, awssm: {region: us-east-1, endpoint: "http://127.0.0.1:9"}}
secrets:
  - id: aws/app
    class: api_key
    rotator: {awsiam: {user: app, region: us-east-1, endpoint: "http://127.0.0.1:9"}}
    checks: [{delay: 1s}]
    publish: [{store: local, path: app.json}]
  - id: api/tok
    class: api_key
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: sm, path: tok}]
  - id: api/local
    class: api_key
    rotator: {token: {prefix: t_, length: 32}}
    publish: [{store: local, path: local}]
`
	f, err := policy.Parse("policies.yaml", []byte(pol))
	require.NoError(t, err)
	hides := func(t *testing.T, tg rotation.Target) {
		t.Helper()
		for _, v := range []string{keySecret, token} {
			j, _ := json.Marshal(v)
			for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v), string(j[1 : len(j)-1])} {
				out := rotation.Redact("err: "+form+" .", tg.Redact...)
				require.NotContains(t, out, form, "%s: %q is not redacted", tg.ID, form)
				require.True(t, strings.HasPrefix(out, "err: "), out)
			}
		}
	}
	for _, first := range []string{"aws/app", "api/tok"} {
		t.Run("first AWS client from "+first, func(t *testing.T) {
			w := newWiring(f, nil)
			defer w.Close()
			ctx := context.Background()
			spec, err := secretSpec(f, "api/local")
			require.NoError(t, err)
			tg, release, err := w.Target(ctx, spec)
			require.NoError(t, err)
			release()
			require.Empty(t, tg.Redact, "no AWS client yet: nothing retrieved")
			for _, id := range []string{first, "api/local"} {
				spec, err := secretSpec(f, id)
				require.NoError(t, err)
				tg, release, err := w.Target(ctx, spec)
				require.NoError(t, err)
				release()
				hides(t, tg)
			}
		})
	}
}
