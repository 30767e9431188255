package policy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const redisPolicy = `version: 1
stores:
  - name: local
    files: {dir: secrets}
secrets:
  - id: cache/redis
    class: database
    rotator:
      redis:
        admin_url: {env: ROTATOR_REDIS_ADMIN_URL}
        user: USER
    publish: [{store: local, path: cache/redis.json}]
CHECKS`

func TestRedisRotator(t *testing.T) {
	for _, tc := range []struct {
		name, user, checks, want string
	}{
		{"ok", "cache", "    checks: [{delay: 2m}]\n", ""},
		{"http check", "cache", "    checks: [{http: {urls: [\"http://app/version\"]}}]\n", ""},
		{"no check", "cache", "", "secrets[0].checks: a redis secret needs a delay or http check"},
		{"default user", "default", "    checks: [{delay: 2m}]\n", `"default" cannot be rotated`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.ReplaceAll(strings.ReplaceAll(redisPolicy, "USER", tc.user), "CHECKS", tc.checks)
			_, err := Parse("policies.yaml", []byte(doc))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
