package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/vaultdev"
)

// derivePolicy publishes a blue/green Postgres secret with a derived DSN
// to the files store, AWS (moto) and Vault (a real dev server).
const derivePolicy = `version: 1
defaults:
  monitor: 0s
  jitter: 0s
  retry: {attempts: 1}
stores:
  - name: local
    files: {dir: secrets}
  - name: aws
    awssm: {region: us-east-1, endpoint: %[1]s}
  - name: vault
    vault:
      address: %[2]s
      mount: secret
      auth: {token: {token: {env: ROTATOR_TEST_VAULT_TOKEN}}}
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}
        role: %[3]s
        connection: {host: %[4]s, port: "%[5]s", database: %[6]s, sslmode: disable}
    publish:
      - store: local
        path: db/postgres.json
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
      - store: aws
        path: derive/db/postgres
        derive: {database_url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
      - store: vault
        path: breakpilot/database/postgres
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
    # The live client connects once per read of the url: between its read
    # and its connect it holds the old url and no session, which the
    # session count cannot see; the delay gives such clients time to move
    # (as the load proof's policy does).
    checks:
      - delay: 1s
    grace: 30s
`

// TestCLIDerivedURL: through the CLI, every rotation publishes a DSN
// (url, database_url) beside the password in the files store, AWS and
// Vault; a client connecting with each store's DSN logs in as the new
// login role after every rotation, and after a rollback with the DSN of
// the restored version. No output of the CLI holds a DSN or a password.
func TestCLIDerivedURL(t *testing.T) {
	ctx := context.Background()
	moto := mototest.New(t)
	vd := vaultdev.New(t, vaultdev.Options{})
	appDSN := pgtest.NewDatabase(t)
	u, err := url.Parse(appDSN)
	require.NoError(t, err)
	role := fmt.Sprintf("drv%d", os.Getpid()%100000)
	conn, err := pgx.Connect(ctx, appDSN)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s`, role))
	require.NoError(t, err)
	conn.Close(ctx)

	policy := fmt.Sprintf(derivePolicy, moto.URL, vd.Addr, role, u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"))
	e := newEnv(t, pgtest.NewDatabase(t), policy, "ROTATOR_PG_ADMIN_DSN="+appDSN, "ROTATOR_TEST_VAULT_TOKEN="+vd.RootToken,
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
	var outputs strings.Builder
	must := func(args ...string) {
		t.Helper()
		r := e.run(nil, args...)
		outputs.WriteString(r.stdout + r.stderr)
		require.Equal(t, 0, r.code, "rotator %v:\n%s\n%s", args, r.stdout, r.stderr)
	}
	must("migrate")
	must("init", "--secret", "db/postgres")

	sm := secretsmanager.NewFromConfig(moto.AWSConfig())
	kv := vd.Client(t).KVv2("secret")
	// published returns, per store, the DSN and the username beside it.
	published := func() map[string][2]string {
		t.Helper()
		out := map[string][2]string{}
		b, err := os.ReadFile(filepath.Join(e.dir, "secrets/db/postgres.json"))
		require.NoError(t, err)
		var fd map[string]string
		require.NoError(t, json.Unmarshal(b, &fd))
		require.Equal(t, "url", fd["secret_fields"])
		out["files"] = [2]string{fd["url"], fd["username"]}
		gv, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("derive/db/postgres"), VersionStage: aws.String("AWSCURRENT")})
		require.NoError(t, err)
		var ad map[string]string
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(gv.SecretString)), &ad))
		require.Equal(t, "database_url", ad["secret_fields"])
		out["aws"] = [2]string{ad["database_url"], ad["username"]}
		sec, err := kv.Get(ctx, "breakpilot/database/postgres")
		require.NoError(t, err)
		out["vault"] = [2]string{fmt.Sprint(sec.Data["url"]), fmt.Sprint(sec.Data["username"])}
		return out
	}
	var seen []string
	// loginAll connects with every store's DSN and requires the login
	// role it names; it returns the (one) DSN all stores publish.
	loginAll := func(what string) string {
		t.Helper()
		p := published()
		require.Equal(t, p["files"], p["aws"], what)
		require.Equal(t, p["files"], p["vault"], what)
		for store, x := range p {
			c, err := pgx.Connect(ctx, x[0])
			require.NoError(t, err, "%s: the %s store's url does not log in", what, store)
			var user string
			require.NoError(t, c.QueryRow(ctx, `SELECT session_user`).Scan(&user))
			c.Close(ctx)
			require.Equal(t, x[1], user, "%s: %s", what, store)
		}
		seen = append(seen, p["files"][0])
		pu, err := url.Parse(p["files"][0])
		require.NoError(t, err)
		pw, _ := pu.User.Password()
		seen = append(seen, pw)
		return p["files"][0]
	}

	// The live client: logs in with what the files store and Vault
	// publish as url, over and over, while the rotations run.
	stop, done := make(chan struct{}), make(chan struct{})
	var logins, failures atomic.Int64
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var dsn string
			if i%2 == 0 {
				b, err := os.ReadFile(filepath.Join(e.dir, "secrets/db/postgres.json"))
				var fd map[string]string
				if err != nil || json.Unmarshal(b, &fd) != nil {
					continue // not published yet
				}
				dsn = fd["url"]
			} else {
				sec, err := kv.Get(ctx, "breakpilot/database/postgres")
				if err != nil {
					continue
				}
				dsn = fmt.Sprint(sec.Data["url"])
			}
			if dsn == "" {
				continue
			}
			c, err := pgx.Connect(ctx, dsn)
			logins.Add(1)
			if err != nil {
				failures.Add(1)
				continue
			}
			c.Close(ctx)
		}
	}()

	var urls []string
	for i := range 3 {
		must("run", "--secret", "db/postgres")
		got := loginAll(fmt.Sprintf("after rotation %d", i+1))
		require.NotContains(t, urls, got, "every rotation publishes a new url")
		urls = append(urls, got)
	}
	must("rollback", "--secret", "db/postgres")
	require.Equal(t, urls[1], loginAll("after rollback"), "the rollback restores the url of the version it restores")
	close(stop)
	<-done
	require.Positive(t, logins.Load())
	require.Zero(t, failures.Load(), "no failed login of the live client in %d", logins.Load())
	t.Logf("live client: %d logins, %d failed", logins.Load(), failures.Load())

	for _, s := range seen {
		require.NotContains(t, outputs.String(), s, "a DSN or a password in the CLI's output")
	}
}
