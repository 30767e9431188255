package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// withDerive returns base with the publish entry deriving fields (the
// derive block's lines follow, each indented by 10 spaces).
func withDerive(t *testing.T, derive string) string {
	return edit(t, "      - {store: local, path: db/postgres.json}\n",
		"      - store: local\n        path: db/postgres.json\n        derive:\n"+derive)
}

func TestDeriveValid(t *testing.T) {
	t.Parallel()
	data := edit(t, "        role: app\n", "        role: app\n        connection: {host: db.internal, port: 5432, database: app, sslmode: require}\n")
	data = data[:len(data)-len("      - {store: local, path: db/postgres.json}\n")] +
		"      - store: local\n        path: db/postgres.json\n        derive:\n" +
		`          url: "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}"` + "\n" +
		`          addr: "{host}:{port} {{literal}}"` + "\n"
	f, err := Parse("policies.yaml", []byte(data))
	require.NoError(t, err)
	require.Equal(t, "{host}:{port} {{literal}}", f.Secrets[0].Publish[0].Derive["addr"])
}

// Every problem of a derived field is reported at file:line:column of its
// template, with the character in the template where it is.
func TestDeriveErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, derive, want string
	}{
		{"unknown placeholder", `          url: "postgres://{username}:{pasword}@{host}/db"` + "\n",
			`policies.yaml:15:16: secrets[0].publish[0].derive.url: template: character 23: unknown placeholder {pasword}; a postgres secret's placeholders are {username}, {password}`},
		{"connection key not set", `          url: "postgres://{username}:{password}@{host}/db"` + "\n",
			`policies.yaml:15:16: secrets[0].publish[0].derive.url: template: character 34: unknown placeholder {host}`},
		{"unclosed", `          url: "postgres://{username:{password}"` + "\n",
			`policies.yaml:15:16: secrets[0].publish[0].derive.url: template: character 12: placeholder {username:{password}: expected a name`},
		{"open brace", `          url: "a {password"` + "\n",
			`policies.yaml:15:16: secrets[0].publish[0].derive.url: template: character 3: a "{" is not closed by "}"`},
		{"stray brace", `          url: "a}{password}"` + "\n",
			`policies.yaml:15:16: secrets[0].publish[0].derive.url: template: character 2: a "}" without its "{"`},
		{"metadata field", `          version: "{password}"` + "\n",
			`policies.yaml:15:20: secrets[0].publish[0].derive.version: field "version" is written by rotator itself`},
		{"secret fields list", `          secret_fields: "{password}"` + "\n",
			`secrets[0].publish[0].derive.secret_fields: field "secret_fields" is written by rotator itself`},
		{"the secret's own field", `          password: "{password}x"` + "\n",
			`secrets[0].publish[0].derive.password: field "password" is written by rotator itself`},
		{"bad name", `          URL: "{password}"` + "\n",
			`secrets[0].publish[0].derive.URL: expected a field name of lowercase letters`},
		{"not a URL once filled", `          url: "postgres://{username}:{password}@[{username}/db"` + "\n",
			`secrets[0].publish[0].derive.url: template: not a valid URL once filled in: missing ']' in host`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("policies.yaml", []byte(withDerive(t, tc.derive)))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDeriveConnectionKeyAndRawFormat(t *testing.T) {
	t.Parallel()
	data := edit(t, "        role: app\n", "        role: app\n        connection: {host: db.internal}\n")
	data = data[:len(data)-len("      - {store: local, path: db/postgres.json}\n")] +
		"      - store: local\n        path: db/postgres.json\n        derive: {host: \"{password}\"}\n"
	_, err := Parse("policies.yaml", []byte(data))
	require.ErrorContains(t, err, `secrets[0].publish[0].derive.host: field "host" is already published from the rotator's connection settings`)

	raw := edit(t, "    files: {dir: out}\n", "    files: {dir: out, format: raw}\n")
	raw = raw[:len(raw)-len("      - {store: local, path: db/postgres.json}\n")] +
		"      - store: local\n        path: db/postgres.json\n        derive: {url: \"{password}\"}\n"
	_, err = Parse("policies.yaml", []byte(raw))
	require.ErrorContains(t, err, `secrets[0].publish[0].derive: store "local" has format raw`)
}

// sharedBase has two secrets; each test sets their publish entries.
const sharedBase = `stores:
  - name: vault
    vault: {address: "http://127.0.0.1:8200"}
  - name: raw
    files: {dir: out, format: raw}
  - name: aws
    awssm: {region: eu-central-1}
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: PG_DSN}
        role: app
        connection: {host: db.internal, port: 5432, database: app}
    publish:
%s
  - id: api/openrouter
    class: api_key
    rotator: {token: {field: api_key}}
    publish:
%s
`

func TestSharedFields(t *testing.T) {
	t.Parallel()
	const (
		pgOK  = `      - {store: vault, path: ai-tg-bot/prod, derive: {url: "postgres://{username}:{password}@{host}/{database}"}, fields: {password: db_password, url: database_url}}`
		apiOK = `      - {store: vault, path: ai-tg-bot/prod, fields: {api_key: openrouter_key}}`
	)
	f, err := Parse("policies.yaml", []byte(fmt.Sprintf(sharedBase, pgOK, apiOK)))
	require.NoError(t, err, "two secrets own distinct fields of one document")
	require.Equal(t, map[string]string{"password": "db_password", "url": "database_url"}, f.Secrets[0].Publish[0].Fields)

	for _, tc := range []struct{ name, pg, api, want string }{
		{"one field owned twice", pgOK, `      - {store: vault, path: ai-tg-bot/prod, fields: {api_key: db_password}}`,
			`policies.yaml:22:64: secrets[1].publish[0].fields.api_key: field "db_password" of store "vault", path "ai-tg-bot/prod" is already owned by policies.yaml:17:9 (secrets[0].publish[0]): two secrets may not own one field`},
		{"metadata collision", `      - {store: vault, path: ai-tg-bot/prod, fields: {password: rotator.db}}`, apiOK,
			`secrets[0].publish[0].fields.password: document field "rotator.db" collides with rotator's metadata fields`},
		{"secret not published", `      - {store: vault, path: ai-tg-bot/prod, fields: {username: db_user}}`, apiOK,
			`secrets[0].publish[0].fields: must publish the secret itself: add password:`},
		{"unknown field", `      - {store: vault, path: ai-tg-bot/prod, fields: {password: db_password, url: database_url}}`, apiOK,
			`secrets[0].publish[0].fields.url: unknown field "url"`},
		{"two names for one field", `      - {store: vault, path: ai-tg-bot/prod, fields: {password: db_password, username: db_password}}`, apiOK,
			`document field "db_password" is already published from`},
		{"whole and shared", pgOK, `      - {store: vault, path: ai-tg-bot/prod}`,
			`a secret that owns the whole document and one that owns fields of it (fields:) may not share it`},
		{"one secret twice", pgOK + "\n" + `      - {store: vault, path: ai-tg-bot/prod, fields: {username: db_user}}`, apiOK,
			`secret "db/postgres" already publishes into store "vault", path "ai-tg-bot/prod"`},
		{"raw files", `      - {store: raw, path: x, fields: {password: db_password}}`, apiOK,
			`secrets[0].publish[0].fields: store "raw" has format raw`},
		// An AWS secret's ARN and its name are one document (the gap the
		// streamed loader's fault campaign found in both loaders).
		{"one AWS field owned twice, by name and by ARN",
			`      - {store: aws, path: ai-tg-bot/prod, fields: {password: db_password}}`,
			`      - {store: aws, path: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:ai-tg-bot/prod-Ab12Cd", fields: {api_key: db_password}}`,
			`field "db_password" of store "aws", path "arn:aws:secretsmanager:eu-central-1:123456789012:secret:ai-tg-bot/prod-Ab12Cd" is already owned by policies.yaml:17:9 (secrets[0].publish[0]): two secrets may not own one field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("policies.yaml", []byte(fmt.Sprintf(sharedBase, tc.pg, tc.api)))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestReadmeSeedsLayout loads the seeds' layout the README shows.
func TestReadmeSeedsLayout(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "#### One field of a shared secret")
	require.Positive(t, i)
	start := strings.Index(s[i:], "```yaml\n") + i + len("```yaml\n")
	end := strings.Index(s[start:], "```") + start
	data := "version: 1\nstores:\n  - name: vault\n    vault: {address: \"http://127.0.0.1:8200\"}\n  - name: aws\n    awssm: {region: eu-central-1}\n" + s[start:end]
	f, err := Parse("README.md", []byte(data))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"password": "db_password", "url": "database_url"}, f.Secrets[0].Publish[1].Fields)
	require.Equal(t, map[string]string{"api_key": "openrouter_key"}, f.Secrets[1].Publish[0].Fields)
}
