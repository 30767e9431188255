package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/vaultdev"
)

// seedsPolicy is the seeds' layout: the database entry on Vault with
// username, password and url; one AWS secret per application holding the
// Telegram token (a person's), the database password and DSN (db/postgres)
// and the OpenRouter key (api/openrouter); and the same shared layout on
// a Vault path.
const seedsPolicy = `version: 1
defaults:
  monitor: 0s
  jitter: 0s
  retry: {attempts: 1}
stores:
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
      - store: vault
        path: breakpilot/database/postgres
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
      - store: aws
        path: ai-tg-bot/prod
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
        fields: {password: db_password, url: database_url}
      - store: vault
        path: ai-tg-bot/prod
        derive: {url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"}
        fields: {password: db_password, url: database_url}
    grace: 30s
  - id: api/openrouter
    class: api_key
    rotator: {token: {prefix: sk-or-, length: 40, field: api_key}}
    publish:
      - {store: aws, path: ai-tg-bot/prod, fields: {api_key: openrouter_key}}
      - {store: vault, path: ai-tg-bot/prod, fields: {api_key: openrouter_key}}
`

// TestCLISeedsLayout: the seeds' layouts end to end through the CLI on
// moto and a real Vault. Two secrets rotate concurrently (two processes)
// into the fields they own of ai-tg-bot/prod, beside a field a person
// writes between the rounds; after every round each store's database_url
// (and the whole-path url) logs in, openrouter_key is api/openrouter's
// current version, telegram_token the person's last value. Each rollback
// restores only its own fields. No CLI output holds a secret.
func TestCLISeedsLayout(t *testing.T) {
	ctx := context.Background()
	moto := mototest.New(t)
	vd := vaultdev.New(t, vaultdev.Options{})
	appDSN := pgtest.NewDatabase(t)
	u, err := url.Parse(appDSN)
	require.NoError(t, err)
	role := fmt.Sprintf("seed%d", os.Getpid()%100000)
	conn, err := pgx.Connect(ctx, appDSN)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s`, role))
	require.NoError(t, err)
	conn.Close(ctx)

	policy := fmt.Sprintf(seedsPolicy, moto.URL, vd.Addr, role, u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"))
	e := newEnv(t, pgtest.NewDatabase(t), policy, "ROTATOR_PG_ADMIN_DSN="+appDSN, "ROTATOR_TEST_VAULT_TOKEN="+vd.RootToken,
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
	var mu sync.Mutex
	var outputs strings.Builder
	must := func(args ...string) {
		t.Helper()
		r := e.run(nil, args...)
		mu.Lock()
		outputs.WriteString(r.stdout + r.stderr)
		mu.Unlock()
		require.Equal(t, 0, r.code, "rotator %v:\n%s\n%s", args, r.stdout, r.stderr)
	}

	sm := secretsmanager.NewFromConfig(moto.AWSConfig())
	kv := vd.Client(t).KVv2("secret")
	readAWS := func() (map[string]string, *string) {
		t.Helper()
		out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ai-tg-bot/prod"), VersionStage: aws.String("AWSCURRENT")})
		require.NoError(t, err)
		var d map[string]string
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.SecretString)), &d))
		return d, out.VersionId
	}
	readVault := func(p string) map[string]string {
		t.Helper()
		s, err := kv.Get(ctx, p)
		require.NoError(t, err)
		d := map[string]string{}
		for k, v := range s.Data {
			d[k] = fmt.Sprint(v)
		}
		return d
	}
	// The application team's documents, before rotator.
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("ai-tg-bot/prod"),
		SecretString: aws.String(`{"telegram_token":"tg-0","db_password":"by-hand","openrouter_key":"sk-by-hand"}`)})
	require.NoError(t, err)
	_, err = kv.Put(ctx, "ai-tg-bot/prod", map[string]any{"telegram_token": "tg-0", "db_password": "by-hand", "openrouter_key": "sk-by-hand"})
	require.NoError(t, err)
	person := func(value string) {
		t.Helper()
		_, err := kv.Patch(ctx, "ai-tg-bot/prod", map[string]any{"telegram_token": value})
		require.NoError(t, err)
		d, cur := readAWS()
		d["telegram_token"] = value
		b, _ := json.Marshal(d)
		// Put and move AWSCURRENT (see TestSharedDocumentTwoSecretsAndAPerson on moto).
		po, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("ai-tg-bot/prod"), SecretString: aws.String(string(b)), VersionStages: []string{"PERSON"}})
		require.NoError(t, err)
		_, err = sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("ai-tg-bot/prod"),
			VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: po.VersionId, RemoveFromVersionId: cur})
		require.NoError(t, err)
	}

	must("migrate")
	must("init", "--secret", "db/postgres")
	var secrets []string
	login := func(what, dsn string) {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err, "%s: the url does not log in", what)
		c.Close(ctx)
		pu, err := url.Parse(dsn)
		require.NoError(t, err)
		pw, _ := pu.User.Password()
		secrets = append(secrets, dsn, pw)
	}
	type state struct{ db, url, key, tg string }
	check := func(what, tg string) state {
		t.Helper()
		a, _ := readAWS()
		v := readVault("ai-tg-bot/prod")
		whole := readVault("breakpilot/database/postgres")
		for _, d := range []map[string]string{a, v} {
			require.Equal(t, tg, d["telegram_token"], "%s: the person's field is kept", what)
			require.Equal(t, whole["password"], d["db_password"], "%s: db_password is db/postgres's current version", what)
			require.Equal(t, whole["url"], d["database_url"], "%s", what)
			require.Contains(t, d, "rotator.db.postgres")
			require.Contains(t, d, "rotator.api.openrouter")
			var meta struct {
				Current map[string]string `json:"current"`
			}
			require.NoError(t, json.Unmarshal([]byte(d["rotator.api.openrouter"]), &meta))
			require.Equal(t, meta.Current["fingerprint"], secret.New(d["openrouter_key"]).Fingerprint(), "%s: openrouter_key is api/openrouter's current version", what)
		}
		require.Equal(t, a["openrouter_key"], v["openrouter_key"], what)
		login(what+": aws database_url", a["database_url"])
		login(what+": vault database_url", v["database_url"])
		login(what+": vault url", whole["url"])
		secrets = append(secrets, a["openrouter_key"])
		return state{db: a["db_password"], url: a["database_url"], key: a["openrouter_key"], tg: tg}
	}

	var states []state
	for round := 1; round <= 2; round++ {
		tg := fmt.Sprintf("tg-%d", round)
		person(tg)
		var wg sync.WaitGroup
		for _, id := range []string{"db/postgres", "api/openrouter"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.run(nil, "run", "--secret", id)
				mu.Lock()
				outputs.WriteString(r.stdout + r.stderr)
				mu.Unlock()
				if r.code != 0 {
					t.Errorf("rotator run --secret %s: %s\n%s", id, r.stdout, r.stderr)
				}
			}()
		}
		wg.Wait()
		require.False(t, t.Failed())
		st := check(fmt.Sprintf("round %d", round), tg)
		require.NotEqual(t, "by-hand", st.db)
		require.NotEqual(t, "sk-by-hand", st.key)
		states = append(states, st)
	}
	person("tg-3")
	must("rollback", "--secret", "api/openrouter")
	a, _ := readAWS()
	require.Equal(t, states[0].key, a["openrouter_key"], "the api rollback restores its field")
	require.Equal(t, states[1].db, a["db_password"], "and leaves db/postgres's alone")
	require.Equal(t, "tg-3", a["telegram_token"])
	must("rollback", "--secret", "db/postgres")
	st := check("after both rollbacks", "tg-3")
	require.Equal(t, states[0].db, st.db, "the db rollback restores its fields")
	require.Equal(t, states[0].url, st.url)
	require.Equal(t, states[0].key, st.key, "and leaves api/openrouter's alone")

	for _, s := range secrets {
		require.NotContains(t, outputs.String(), s, "a secret in the CLI's output")
	}
}
