package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParsePublishTargets: two publish entries that write to one place,
// however spelled, are refused across the file, naming both places.
func TestParsePublishTargets(t *testing.T) {
	t.Parallel()
	cwd, err := os.Getwd()
	require.NoError(t, err)
	out := filepath.Join(cwd, "out")
	tests := []struct {
		name   string
		stores [2]string // the two stores' definitions
		a, b   [2]string // store and path of secrets a and b
		want   string    // the error after "p.yaml:12:15: secrets[1].publish[0]: ", or "" for none
	}{
		{
			name:   "one store, one path",
			stores: [2]string{"{name: local, files: {dir: out}}", "{name: other, files: {dir: other}}"},
			a:      [2]string{"local", "shared.json"}, b: [2]string{"local", "shared.json"},
			want: `store "local", path "shared.json" is already published to at p.yaml:8:15 (secrets[0].publish[0]): two publish entries may not write to one place`,
		},
		{
			name:   "./x and x",
			stores: [2]string{"{name: local, files: {dir: out}}", "{name: other, files: {dir: other}}"},
			a:      [2]string{"local", "./x"}, b: [2]string{"local", "x"},
			want: `store "local", path "x" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "local", path "./x"): both are the file ` + filepath.Join(out, "x") + `; two publish entries may not write to one place`,
		},
		{
			name:   "a//b and a/b",
			stores: [2]string{"{name: local, files: {dir: out}}", "{name: other, files: {dir: other}}"},
			a:      [2]string{"local", "a//b"}, b: [2]string{"local", "a/./b"},
			want: `store "local", path "a/./b" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "local", path "a//b"): both are the file ` + filepath.Join(out, "a", "b") + `; two publish entries may not write to one place`,
		},
		{
			name:   "two files stores on one directory",
			stores: [2]string{"{name: one, files: {dir: out}}", "{name: two, files: {dir: ./out/, format: raw}}"},
			a:      [2]string{"one", "x"}, b: [2]string{"two", "x"},
			want: `store "two", path "x" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "one", path "x"): both are the file ` + filepath.Join(out, "x") + `; two publish entries may not write to one place`,
		},
		{
			name:   "a relative and an absolute directory",
			stores: [2]string{"{name: one, files: {dir: out}}", fmt.Sprintf("{name: two, files: {dir: %q}}", out)},
			a:      [2]string{"one", "x"}, b: [2]string{"two", "x"},
			want: `store "two", path "x" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "one", path "x"): both are the file ` + filepath.Join(out, "x") + `; two publish entries may not write to one place`,
		},
		{
			name:   "a files store inside another",
			stores: [2]string{"{name: one, files: {dir: out}}", "{name: two, files: {dir: out/sub}}"},
			a:      [2]string{"one", "sub/x"}, b: [2]string{"two", "x"},
			want: `store "two", path "x" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "one", path "sub/x"): both are the file ` + filepath.Join(out, "sub", "x") + `; two publish entries may not write to one place`,
		},
		{
			name:   "files stores on two directories",
			stores: [2]string{"{name: one, files: {dir: out}}", "{name: two, files: {dir: out2}}"},
			a:      [2]string{"one", "x"}, b: [2]string{"two", "x"},
		},
		{
			name:   "one Vault server, mount and path, spelled two ways",
			stores: [2]string{"{name: v1, vault: {address: \"https://Vault.example:443/\"}}", "{name: v2, vault: {address: \"https://vault.example\", mount: /secret/}}"},
			a:      [2]string{"v1", "app/db"}, b: [2]string{"v2", "app//db/"},
			want: `store "v2", path "app//db/" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "v1", path "app/db"): both are Vault https://vault.example mount secret path app/db; two publish entries may not write to one place`,
		},
		{
			name:   "two Vault stores on VAULT_ADDR",
			stores: [2]string{"{name: v1, vault: {mount: kv}}", "{name: v2, vault: {mount: kv, auth: {kubernetes: {role: r}}}}"},
			a:      [2]string{"v1", "app"}, b: [2]string{"v2", "app"},
			want: `store "v2", path "app" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "v1", path "app"): both are Vault VAULT_ADDR mount kv path app; two publish entries may not write to one place`,
		},
		{
			name:   "Vault: two mounts",
			stores: [2]string{"{name: v1, vault: {address: \"https://vault.example\"}}", "{name: v2, vault: {address: \"https://vault.example\", mount: kv}}"},
			a:      [2]string{"v1", "app"}, b: [2]string{"v2", "app"},
		},
		{
			name:   "Vault: two namespaces",
			stores: [2]string{"{name: v1, vault: {namespace: a}}", "{name: v2, vault: {namespace: b}}"},
			a:      [2]string{"v1", "app"}, b: [2]string{"v2", "app"},
		},
		{
			name:   "Vault: two servers",
			stores: [2]string{"{name: v1, vault: {address: \"https://vault-a.example\"}}", "{name: v2, vault: {address: \"https://vault-b.example\"}}"},
			a:      [2]string{"v1", "app"}, b: [2]string{"v2", "app"},
		},
		{
			name:   "AWS: one region, one secret id",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-central-1, kms_key_id: alias/x}}"},
			a:      [2]string{"a1", "prod/db"}, b: [2]string{"a2", "prod/db"},
			want: `store "a2", path "prod/db" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "a1", path "prod/db"): both are AWS Secrets Manager secret "prod/db" in region eu-central-1; two publish entries may not write to one place`,
		},
		{
			name:   "AWS: one endpoint spelled two ways",
			stores: [2]string{"{name: a1, awssm: {region: us-east-1, endpoint: \"http://127.0.0.1:5000/\"}}", "{name: a2, awssm: {region: us-east-1, endpoint: \"HTTP://127.0.0.1:5000\"}}"},
			a:      [2]string{"a1", "x"}, b: [2]string{"a2", "x"},
			want: `store "a2", path "x" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "a1", path "x"): both are AWS Secrets Manager secret "x" in region us-east-1 at http://127.0.0.1:5000; two publish entries may not write to one place`,
		},
		{
			name:   "AWS: two regions",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-west-1}}"},
			a:      [2]string{"a1", "prod/db"}, b: [2]string{"a2", "prod/db"},
		},
		{
			name:   "AWS: names are taken as written",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-west-1}}"},
			a:      [2]string{"a1", "./x"}, b: [2]string{"a1", "x"},
		},
		{
			name:   "AWS: a name and the secret's complete ARN",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-west-1}}"},
			a:      [2]string{"a1", "prod/db"}, b: [2]string{"a1", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/db-AbC123"},
			want: `store "a1", path "arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/db-AbC123" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "a1", path "prod/db"): both are AWS Secrets Manager secret "prod/db" in region eu-central-1; two publish entries may not write to one place`,
		},
		{
			name:   "AWS: a partial ARN and the name",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-central-1}}"},
			a:      [2]string{"a1", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:app"}, b: [2]string{"a2", "app"},
			want: `store "a2", path "app" is already published to at p.yaml:8:15 (secrets[0].publish[0], as store "a1", path "arn:aws:secretsmanager:eu-central-1:123456789012:secret:app"): both are AWS Secrets Manager secret "app" in region eu-central-1; two publish entries may not write to one place`,
		},
		{
			name:   "AWS: the ARNs of two names",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-central-1}}"},
			a:      [2]string{"a1", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:app-AbC123"}, b: [2]string{"a2", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:app2-AbC123"},
		},
		{
			name:   "AWS: an ARN of another service is a name",
			stores: [2]string{"{name: a1, awssm: {region: eu-central-1}}", "{name: a2, awssm: {region: eu-central-1}}"},
			a:      [2]string{"a1", "arn:aws:ssm:eu-central-1:123456789012:secret:app"}, b: [2]string{"a2", "app"},
		},
		{
			name:   "one path in two kinds of store",
			stores: [2]string{"{name: local, files: {dir: out}}", "{name: v, vault: {}}"},
			a:      [2]string{"local", "x"}, b: [2]string{"v", "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := fmt.Sprintf(`stores:
  - %s
  - %s
secrets:
  - id: a
    class: api_key
    rotator: {token: {}}
    publish: [{store: %s, path: %q}]
  - id: b
    class: api_key
    rotator: {token: {}}
    publish: [{store: %s, path: %q}]
`, tt.stores[0], tt.stores[1], tt.a[0], tt.a[1], tt.b[0], tt.b[1])
			_, err := Parse("p.yaml", []byte(data))
			if tt.want == "" {
				require.NoError(t, err, "file:\n%s", data)
				return
			}
			require.EqualError(t, err, "p.yaml:12:15: secrets[1].publish[0]: "+tt.want, "file:\n%s", data)
		})
	}
}
