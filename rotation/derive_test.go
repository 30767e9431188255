package rotation_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/derive"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
)

func mustTemplate(t *testing.T, s string) *derive.Template {
	t.Helper()
	tm, err := derive.Parse(s)
	require.NoError(t, err)
	return tm
}

// A derived field with the secret in it is secret: in Derived, listed
// under secret_fields, parsed back as secret; one without goes to Extra.
func TestDeriveDataRoundTrip(t *testing.T) {
	t.Parallel()
	v := rotation.Version{Number: 3, RunID: "r3", Credential: rotation.Credential{Username: "app_blue", Secret: secret.New("pw:@/?x"),
		Extra: map[string]string{"host": "db", "port": "5432"}}}
	d, err := rotation.Derive(v, []rotation.DerivedField{
		{Name: "url", Template: mustTemplate(t, "postgres://{username}:{password}@{host}:{port}/app")},
		{Name: "addr", Template: mustTemplate(t, "{host}:{port}")},
	})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"host": "db", "port": "5432", "addr": "db:5432"}, d.Credential.Extra)
	require.Len(t, d.Credential.Derived, 1)
	require.Nil(t, v.Credential.Derived, "Derive does not change its argument")

	data := d.Data()
	require.Equal(t, "url", data[rotation.DataSecretFields])
	require.Equal(t, "postgres://app_blue:pw%3A%40%2F%3Fx@db:5432/app", data["url"])
	back, err := rotation.ParseData(data)
	require.NoError(t, err)
	require.True(t, back.Credential.Derived["url"].Equal(secret.New(data["url"])))
	require.NotContains(t, back.Credential.Extra, "url", "a secret derived field is never in Extra")

	// A value formatted or logged shows no secret.
	require.NotContains(t, back.Credential.Derived["url"].String(), "pw")

	// Data that lists a secret field it lacks is refused, naming the field.
	delete(data, "url")
	_, err = rotation.ParseData(data)
	require.ErrorContains(t, err, `"url"`)
}

// Redact removes a secret in the escaped forms a derived URL writes it in.
func TestRedactEscapedForms(t *testing.T) {
	t.Parallel()
	pw := secret.New("a b/c@d:e?f")
	for _, form := range []string{pw.Reveal(), url.User(pw.Reveal()).String(), url.PathEscape(pw.Reveal()), url.QueryEscape(pw.Reveal())} {
		out := rotation.Redact("dial postgres://u:"+form+"@h/db failed", pw)
		require.NotContains(t, out, form)
		require.Contains(t, out, secret.Redacted)
	}
}

// memDoc is an in-memory DocStore.
type memDoc struct {
	doc map[string]string
	rev int
}

func (m *memDoc) ReadDoc(_ context.Context, _ string) (map[string]string, string, error) {
	if m.doc == nil {
		return nil, "", nil
	}
	return maps.Clone(m.doc), fmt.Sprint(m.rev), nil
}

func (m *memDoc) WriteDoc(_ context.Context, _ string, doc map[string]string, rev string) error {
	cur := ""
	if m.doc != nil {
		cur = fmt.Sprint(m.rev)
	}
	if cur != rev {
		return rotation.ErrDocConflict
	}
	m.doc, m.rev = maps.Clone(doc), m.rev+1
	return nil
}

func (m *memDoc) Where(string) string { return "mem" }

// An API key put into a shared document by hand is kept, readable, as the
// previous version of the first publish.
func TestSharedHandPutPrevious(t *testing.T) {
	t.Parallel()
	d := &memDoc{doc: map[string]string{"openrouter_key": "sk-by-hand", "telegram_token": "tg"}}
	s := rotation.SharedFields(d, rotation.SharedMetaField("api/openrouter"), map[string]string{"api_key": "openrouter_key"})
	desc, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: "p"})
	require.NoError(t, err)
	require.Nil(t, desc.Current, "without the secret's field name a hand-put value is not described")
	v := rotation.Version{Number: 1, RunID: "r1", Credential: rotation.Credential{Secret: secret.New("sk-new"), Field: "api_key"}}
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "p", Version: v, Expect: &rotation.Expect{}}))
	prev, err := s.Read(t.Context(), rotation.ReadRequest{Path: "p", Which: rotation.Previous})
	require.NoError(t, err)
	require.Equal(t, "sk-by-hand", prev.Credential.Secret.Reveal())
	require.Equal(t, "tg", d.doc["telegram_token"])
	require.Equal(t, "sk-new", d.doc["openrouter_key"])
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: "p", RunID: "r1"}))
	require.Equal(t, "sk-by-hand", d.doc["openrouter_key"])
}

// A rollback that names the version it must restore is refused when the
// secret's previous fields hold another one.
func TestSharedRollbackExpect(t *testing.T) {
	t.Parallel()
	d := &memDoc{}
	s := rotation.SharedFields(d, rotation.SharedMetaField("db/app"), map[string]string{"password": "db_password"})
	for i, run := range []string{"r1", "r2"} {
		v := rotation.Version{Number: int64(i + 1), RunID: run, Credential: rotation.Credential{Secret: secret.New("pw-" + run)}}
		require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "p", Version: v}))
	}
	err := s.Rollback(t.Context(), rotation.RollbackRequest{Path: "p", RunID: "r2", Discard: true, Expect: &rotation.Expect{RunID: "r0"}})
	require.ErrorIs(t, err, rotation.ErrPreviousMoved)
	require.Equal(t, "pw-r2", d.doc["db_password"], "nothing rolled back")
	require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: "p", RunID: "r2", Discard: true, Expect: &rotation.Expect{RunID: "r1"}}))
	require.Equal(t, "pw-r1", d.doc["db_password"])
}
