package appsecret_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/derive"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
	"github.com/rotator/rotator/stores/vault"
)

// An application reads a derived field (the DSN rotator renders beside
// the password) like any secret: the value is the DSN of the current (or
// previous) version, its fingerprint is its version's, and neither the
// DSN nor the password is among the non-secret Fields.
func TestReadDerivedField(t *testing.T) {
	t.Parallel()
	tmpl, err := derive.Parse("postgres://{username}:{password}@{host}:{port}/{database}")
	require.NoError(t, err)
	fields := []rotation.DerivedField{{Name: "url", Template: tmpl}}
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	v2.Credential.Secret = secret.New(v2.Credential.Secret.Reveal() + "@:/%")

	dir := t.TempDir()
	fs, err := files.New(&policy.FilesSpec{Dir: dir, Format: policy.FormatJSON}, dir)
	require.NoError(t, err)

	vd := vaultdev.New(t, vaultdev.Options{})
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte(vd.RootToken), 0o600))
	spec := &policy.VaultSpec{Address: vd.Addr, Mount: "secret"}
	spec.Auth.Token = &policy.VaultTokenAuth{Token: policy.Ref{File: tok}}
	vs, err := vault.New(context.Background(), vault.Config{Spec: spec})
	require.NoError(t, err)
	t.Cleanup(vs.Close)

	for _, st := range []rotation.Store{fs, vs} {
		d := rotation.DeriveFields(st, fields)
		for _, v := range []rotation.Version{v1, v2} {
			require.NoError(t, d.Publish(t.Context(), rotation.PublishRequest{Path: "db/app", Version: v}))
		}
	}
	wantURL := func(v rotation.Version) string {
		pw := v.Credential.Secret.Reveal()
		return fmt.Sprintf("postgres://%s:%s@db.internal:5432/app", v.Credential.Username, url.User(pw).String())
	}

	for name, opts := range map[string]appsecret.Options{
		"file":  {File: filepath.Join(dir, "db/app"), Getenv: env(nil)},
		"vault": {Vault: vd.Client(t), VaultPath: "db/app", Getenv: env(map[string]string{"VAULT_ADDR": vd.Addr})},
	} {
		t.Run(name, func(t *testing.T) {
			opts.Name = "db/app"
			opts.Field = "url"
			s, err := appsecret.Open(context.Background(), opts)
			require.NoError(t, err)
			cur := s.Current()
			require.Equal(t, wantURL(v2), cur.Reveal())
			u, err := url.Parse(cur.Reveal())
			require.NoError(t, err)
			pw, _ := u.User.Password()
			require.Equal(t, v2.Credential.Secret.Reveal(), pw, "the DSN carries the password, escaped")
			require.Equal(t, v2.Credential.Secret.Fingerprint(), cur.Fingerprint, "the version's fingerprint")
			require.Equal(t, int64(2), cur.Number)
			require.Equal(t, map[string]string{"username": "app_green", "host": "db.internal", "port": "5432", "database": "app"}, cur.Fields)
			prev, ok := s.Previous()
			require.True(t, ok)
			require.Equal(t, wantURL(v1), prev.Reveal())

			// Reading the password, the DSN is not among the Fields either.
			opts.Field = ""
			s, err = appsecret.Open(context.Background(), opts)
			require.NoError(t, err)
			require.True(t, v2.Credential.Secret.Equal(secret.New(s.Current().Reveal())))
			require.NotContains(t, s.Current().Fields, "url")
			require.Equal(t, v2.Credential.Secret.Fingerprint(), s.Current().Fingerprint)
		})
	}
}

// A field of a shared document reads as its secret's version: the
// number, run id and fingerprint of the secret that owns it (from its
// rotator.<id> field), and only that secret's non-secret fields, never
// the other secrets of the document.
func TestReadSharedField(t *testing.T) {
	t.Parallel()
	tmpl, err := derive.Parse("postgres://{username}:{password}@{host}:{port}/{database}")
	require.NoError(t, err)
	vd := vaultdev.New(t, vaultdev.Options{})
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte(vd.RootToken), 0o600))
	spec := &policy.VaultSpec{Address: vd.Addr, Mount: "secret"}
	spec.Auth.Token = &policy.VaultTokenAuth{Token: policy.Ref{File: tok}}
	vs, err := vault.New(context.Background(), vault.Config{Spec: spec})
	require.NoError(t, err)
	t.Cleanup(vs.Close)
	_, err = vd.Client(t).KVv2("secret").Put(t.Context(), "ai-tg-bot/prod", map[string]any{"telegram_token": "tg-secret-value"})
	require.NoError(t, err)

	db := rotation.DeriveFields(rotation.SharedFields(vs, rotation.SharedMetaField("db/postgres"),
		map[string]string{"password": "db_password", "url": "database_url"}), []rotation.DerivedField{{Name: "url", Template: tmpl}})
	api := rotation.SharedFields(vs, rotation.SharedMetaField("api/openrouter"), map[string]string{"api_key": "openrouter_key"})
	v1 := storetest.Version(t, 7, storetest.RunID())
	k1 := storetest.Version(t, 3, storetest.RunID())
	k1.Credential = rotation.Credential{Secret: k1.Credential.Secret, Field: "api_key", KeyID: "k3"}
	require.NoError(t, db.Publish(t.Context(), rotation.PublishRequest{Path: "ai-tg-bot/prod", Version: v1}))
	require.NoError(t, api.Publish(t.Context(), rotation.PublishRequest{Path: "ai-tg-bot/prod", Version: k1}))

	open := func(field string) appsecret.Version {
		s, err := appsecret.Open(context.Background(), appsecret.Options{Name: "ai-tg-bot", Vault: vd.Client(t), VaultPath: "ai-tg-bot/prod",
			Field: field, Getenv: env(map[string]string{"VAULT_ADDR": vd.Addr})})
		require.NoError(t, err)
		return s.Current()
	}
	pw := open("db_password")
	require.True(t, v1.Credential.Secret.Equal(secret.New(pw.Reveal())))
	require.Equal(t, v1.Credential.Secret.Fingerprint(), pw.Fingerprint)
	require.Equal(t, int64(7), pw.Number)
	require.Equal(t, v1.RunID, pw.RunID)
	require.Equal(t, map[string]string{"username": "app_blue", "host": "db.internal", "port": "5432", "database": "app"}, pw.Fields,
		"only the db secret's non-secret fields")

	dsn := open("database_url")
	require.Contains(t, dsn.Reveal(), v1.Credential.Secret.Reveal())
	require.Equal(t, v1.Credential.Secret.Fingerprint(), dsn.Fingerprint, "a derived field is named by its version's fingerprint")
	require.Equal(t, pw.Fields, dsn.Fields)

	key := open("openrouter_key")
	require.True(t, k1.Credential.Secret.Equal(secret.New(key.Reveal())))
	require.Equal(t, k1.Credential.Secret.Fingerprint(), key.Fingerprint)
	require.Equal(t, int64(3), key.Number)
	require.Equal(t, map[string]string{"key_id": "k3"}, key.Fields)

	tg := open("telegram_token")
	require.Equal(t, "tg-secret-value", tg.Reveal())
	require.Regexp(t, `^k-`, tg.Fingerprint, "a field no rotator owns: a keyed fingerprint")
	require.Zero(t, tg.Number)
	require.Empty(t, tg.Fields, "the other secrets of the document and rotator's metadata are not its fields")
}
