package policy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const keyringPolicy = `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: auth/jwt
    class: admin_token
ONTIMEOUT    rotator:
      keyring:
KEYRING
    publish: [{store: local, path: auth/jwt.json}]
CHECKS`

func TestKeyringRotator(t *testing.T) {
	const life = "        max_token_lifetime: 1h\n"
	const check = "    checks: [{http: {urls: [\"http://app/keyring\"]}}]\n"
	for _, tc := range []struct {
		name, keyring, checks, onTimeout, want string
	}{
		{"ok", life, check, "", ""},
		{"delay check", life, "    checks: [{delay: 2m}]\n", "    on_timeout: hold\n", ""},
		{"all set", life + "        algorithm: HS512\n        size: 64\n        field: jwt_keys\n", check, "", ""},
		{"no lifetime", "        size: 32\n", check, "", "policies.yaml:9:7: secrets[0].rotator.keyring.max_token_lifetime: required"},
		{"zero lifetime", "        max_token_lifetime: 0s\n", check, "", "policies.yaml:10:29: secrets[0].rotator.keyring.max_token_lifetime: must be longer than 0s"},
		{"bad algorithm", life + "        algorithm: RS256\n", check, "", `policies.yaml:11:20: secrets[0].rotator.keyring.algorithm`},
		{"size", life + "        size: 2000\n", check, "", "policies.yaml:11:15: secrets[0].rotator.keyring.size: must be between 32 and 1024 bytes"},
		{"no check", life, "", "", "secrets[0].checks: a keyring secret needs an http check"},
		{"proceed", life, check, "    on_timeout: proceed\n", "policies.yaml:8:17: secrets[0].on_timeout: a keyring secret (auth/jwt) needs on_timeout: hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.NewReplacer("KEYRING\n", tc.keyring, "CHECKS", tc.checks, "ONTIMEOUT", tc.onTimeout).Replace(keyringPolicy)
			f, err := Parse("policies.yaml", []byte(doc))
			if tc.want == "" {
				require.NoError(t, err)
				require.Equal(t, "keyring", f.Secrets[0].Rotator.Type())
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// on_timeout: proceed from the defaults is refused where it is written.
func TestKeyringProceedFromDefaults(t *testing.T) {
	doc := strings.NewReplacer("KEYRING\n", "        max_token_lifetime: 1h\n", "CHECKS", "    checks: [{delay: 2m}]\n", "ONTIMEOUT", "").Replace(keyringPolicy)
	_, err := Parse("policies.yaml", []byte("defaults: {on_timeout: proceed}\n"+doc))
	require.ErrorContains(t, err, "policies.yaml:1:24: defaults.on_timeout: a keyring secret (auth/jwt) needs on_timeout: hold")
}

const keyringSizePolicy = `version: 1
stores:
  - name: local
    files: {dir: secrets}
  - name: aws
    awssm: {region: eu-west-1}
secrets:
  - id: auth/jwt
    class: admin_token
    SCHEDULE
    rotator:
      keyring:
        max_token_lifetime: LIFE
        size: SIZE
    publish: [{store: local, path: auth/jwt.json}, {store: STORE, path: auth/jwt}]
    checks: [{delay: 2m}]
    on_timeout: hold
`

// A ring that can outgrow the smallest limit among its stores is refused
// at max_token_lifetime, with its position and the numbers behind it; a
// files store sets no limit.
func TestKeyringRingSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, schedule, life, size, store, want string
	}{
		{"fits AWS", "interval: 24h", "24h", "64", "aws", ""},
		{"1024-byte keys, hourly, a month's tokens", "interval: 1h", "720h", "1024", "aws",
			"policies.yaml:13:29: secrets[0].rotator.keyring.max_token_lifetime: the ring can outgrow store aws (publish[1]): " +
				"with max_token_lifetime 720h0m0s and interval 1h0m0s it can hold 723 keys of 1024 bytes"},
		{"above AWS's limit", "interval: 1h", "48h", "1024", "aws", "above AWS Secrets Manager's limit on a secret value (65536 bytes)"},
		{"hourly cron", `cron: "0 * * * *"`, "72h", "1024", "aws", `cron "0 * * * *" can run it every 1h0m0s it can hold 75 keys`},
		{"hourly cron, a day's tokens", `cron: "0 * * * *"`, "24h", "1024", "aws", ""},
		{"files: no limit", "interval: 1h", "720h", "1024", "local", ""},
		{"Vault's limit is larger", "interval: 1h", "48h", "1024", "vault", ""},
		{"Vault's limit too", "interval: 1h", "720h", "1024", "vault", "above Vault's default limit on one JSON string in a request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := strings.NewReplacer("SCHEDULE", tc.schedule, "LIFE", tc.life, "SIZE", tc.size, "STORE", tc.store).Replace(keyringSizePolicy)
			if tc.store == "vault" {
				doc = strings.Replace(doc, "  - name: aws\n", "  - name: vault\n    vault: {address: \"http://127.0.0.1:8200\", mount: secret, auth: {token: {token: {env: VAULT_TOKEN}}}}\n  - name: aws\n", 1)
			}
			_, err := Parse("policies.yaml", []byte(doc))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A derived field that repeats the ring shares the store's limit with it:
// a ring that fits alone is refused with it, and the error says so.
func TestKeyringRingSizeCountsDerivedCopies(t *testing.T) {
	t.Parallel()
	doc := strings.NewReplacer("SCHEDULE", "interval: 1h", "LIFE", "24h", "SIZE", "1024", "STORE", "aws").Replace(keyringSizePolicy)
	_, err := Parse("policies.yaml", []byte(doc))
	require.NoError(t, err, "the ring alone fits")
	doc = strings.Replace(doc, "{store: aws, path: auth/jwt}", `{store: aws, path: auth/jwt, derive: {ring_env: "JWT_KEYRING={keyring}"}}`, 1)
	_, err = Parse("policies.yaml", []byte(doc))
	require.ErrorContains(t, err, "above AWS Secrets Manager's limit on a secret value (65536 bytes), shared with 1 derived field(s) of publish[1] that repeat the secret")
}
