package main

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// The keyring rotator is built with the smallest limit among the stores
// its secret publishes to: a published ring of 45 keys of 1024 bytes
// (made by hand, or by runs faster than the schedule) cannot grow at
// AWS, and can at a files store.
func TestKeyringTakesItsStoresLimit(t *testing.T) {
	t.Parallel()
	const pol = `stores: [{name: local, files: {dir: out}}, {name: aws, awssm: {region: eu-west-1}}]
secrets:
  - id: auth/jwt
    class: admin_token
    interval: 24h
    rotator: {keyring: {max_token_lifetime: 24h, size: 1024}}
    publish: [{store: local, path: jwt}STORE]
    checks: [{delay: 1m}]
    on_timeout: hold
`
	now := time.Now().UTC()
	ring := appsecret.Ring{Algorithm: "HS256", MaxTokenLifetime: 24 * time.Hour}
	for i := range 45 {
		state := appsecret.KeyAccepted
		switch i {
		case 43:
			state = appsecret.KeySigning
		case 44:
			state = appsecret.KeyNext
		}
		k := appsecret.NewRingKey(fmt.Sprintf("k%016x", i), state, now, make([]byte, 1024))
		if state == appsecret.KeyAccepted {
			k.AcceptUntil = now.Add(time.Hour)
		}
		ring.Keys = append(ring.Keys, k)
	}
	doc, err := ring.Encode()
	require.NoError(t, err)
	published := &rotation.Credential{Secret: secret.New(doc), Field: "keyring", KeyID: "k000000000000002b"}
	for store, want := range map[string]string{
		"":                               "",
		", {store: aws, path: auth/jwt}": "above AWS Secrets Manager's limit on a secret value of store aws (65536 bytes): nothing was published",
	} {
		f, err := policy.Parse("policies.yaml", []byte(strings.Replace(pol, "STORE", store, 1)))
		require.NoError(t, err)
		w := newWiring(f, slog.New(slog.DiscardHandler))
		r, err := w.keyring(f.Secrets[0])
		require.NoError(t, err)
		_, err = r.Generate(t.Context(), rotation.GenerateRequest{SecretID: "auth/jwt", RunID: "r", Published: published})
		if want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorContains(t, err, want)
		require.True(t, rotation.IsPermanent(err))
	}
}
