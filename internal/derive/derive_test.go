package derive_test

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/derive"
)

const dsn = "postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}&application_name={app}"

// Every value comes back out of net/url unchanged, whatever it holds:
// each placeholder is escaped for its part of the URL.
func TestRenderURLEscapesEachPart(t *testing.T) {
	tm, err := derive.Parse(dsn)
	require.NoError(t, err)
	require.True(t, tm.IsURL())
	parts := map[string]derive.Part{}
	for _, p := range tm.Placeholders() {
		parts[p.Name] = p.Part
	}
	require.Equal(t, map[string]derive.Part{"username": derive.UserInfo, "password": derive.UserInfo, "host": derive.Host,
		"port": derive.Host, "database": derive.Path, "sslmode": derive.Query, "app": derive.Query}, parts)

	vals := map[string]string{"username": "app:blue@x", "password": "p@ss:w/o?r#d% &=+", "host": "db.internal", "port": "5432",
		"database": "my db/x", "sslmode": "verify-full", "app": "a&b=c d"}
	s, err := tm.Render(vals)
	require.NoError(t, err)
	u, err := url.Parse(s)
	require.NoError(t, err)
	require.Equal(t, vals["username"], u.User.Username())
	pw, _ := u.User.Password()
	require.Equal(t, vals["password"], pw)
	require.Equal(t, "db.internal:5432", u.Host)
	require.Equal(t, "/"+vals["database"], u.Path)
	require.Equal(t, vals["sslmode"], u.Query().Get("sslmode"))
	require.Equal(t, vals["app"], u.Query().Get("application_name"))
}

func TestRenderPlainAndBraces(t *testing.T) {
	tm, err := derive.Parse("{username}:{password} {{literal}}")
	require.NoError(t, err)
	require.False(t, tm.IsURL())
	s, err := tm.Render(map[string]string{"username": "u", "password": "a@b:c"})
	require.NoError(t, err)
	require.Equal(t, "u:a@b:c {literal}", s)
	require.True(t, tm.Uses("password"))
	require.False(t, tm.Uses("host"))
}

func TestRenderRefuses(t *testing.T) {
	tm, err := derive.Parse(dsn)
	require.NoError(t, err)
	_, err = tm.Render(map[string]string{"username": "u"})
	require.ErrorContains(t, err, "no value for {password}")
	vals := map[string]string{"username": "u", "password": "secret-value", "host": "evil/x", "port": "1", "database": "d", "sslmode": "s", "app": "a"}
	_, err = tm.Render(vals)
	require.ErrorContains(t, err, "{host}")
	require.NotContains(t, err.Error(), "secret-value")
}

func TestParseErrors(t *testing.T) {
	for src, want := range map[string]struct {
		off int
		msg string
	}{
		"postgres://{username":   {11, "not closed"},
		"a}b":                    {1, "without its"},
		"x{}":                    {1, "placeholder {}"},
		"x{Pass}":                {1, "placeholder {Pass}"},
		"postgres://{user-name}": {11, "placeholder {user-name}"},
	} {
		_, err := derive.Parse(src)
		var de *derive.Error
		require.ErrorAs(t, err, &de, src)
		require.Equal(t, want.off, de.Offset, src)
		require.Contains(t, de.Msg, want.msg, src)
	}
}
