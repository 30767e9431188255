package dsn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/dsn"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// noLeak fails when any part of out that is not a REDACTED marker holds
// one of the secrets (a secret that straddles a marker is not a leak).
func noLeak(t *testing.T, out string, secrets []string, what string) {
	t.Helper()
	for _, seg := range strings.Split(out, secret.Redacted) {
		for _, s := range secrets {
			require.NotContains(t, seg, s, "%s leaks %q: %s", what, s, out)
		}
	}
}

// forms are the DSN forms of the issue and their relatives; {addr} is the
// test cluster's host:port, {host} and {port} its parts. hide lists what
// must never be printed: the password as meant first, then its parts.
var forms = []struct {
	name   string
	dsn    string
	parses bool
	hide   []string
}{
	{"url, unescaped @ in the password", "postgres://admin:Sup3r@PartOfThePassword@{addr}/app", false, []string{"Sup3r@PartOfThePassword", "Sup3r", "PartOfThePassword"}},
	{"url, unescaped @, bad port", "postgres://admin:Sup3r@PartOfThePassword@{host}:bad/app", false, []string{"Sup3r@PartOfThePassword", "Sup3r", "PartOfThePassword"}},
	{"url, escaped password", "postgres://admin:p%40ss%2Fw0rd@{addr}/app", true, []string{"p@ss/w0rd", "p%40ss%2Fw0rd", "w0rd"}},
	{"url, password in the query", "postgres://admin@{addr}/app?password=Qu3ryPassw0rd", true, []string{"Qu3ryPassw0rd"}},
	{"url without ://", "postgres//admin:Sup3rS3cret@{addr}/app", false, []string{"Sup3rS3cret"}},
	{"key=value, spaces around =", "host={host} port={port} user=admin password = Sup3rS3cret dbname=app", true, []string{"Sup3rS3cret"}},
	{"key=value, spaces around =, bad port", "host={host} password = Sup3rS3cret port=x", false, []string{"Sup3rS3cret"}},
	{"key=value, escaped space", `host={host} port={port} user=admin password=Sup3r\ S3cret dbname=app`, true, []string{"Sup3r S3cret", "Sup3r", "S3cret"}},
	{"key=value, escaped space, bad port", `host={host} password=Sup3r\ S3cret port=x`, false, []string{"Sup3r S3cret", "Sup3r", "S3cret"}},
	{"key=value, quoted", `host={host} port={port} user=admin password='S3cr\'et tw0' dbname=app`, true, []string{"S3cr'et tw0", "S3cr", "et tw0"}},
}

func expand(t *testing.T, s string) string {
	u, err := url.Parse(pgtest.AdminDSN(t))
	require.NoError(t, err)
	return strings.NewReplacer("{addr}", u.Host, "{host}", u.Hostname(), "{port}", u.Port()).Replace(s)
}

// Every form, through every way an error about it is made: a parse
// error, a refused login at a real server (scram), a connection refused,
// and a library that quotes the DSN or its password in any escaping; in
// text, in JSON (a webhook payload) and in a log line. Nothing of the
// password is printed; a DSN that does not parse is not printed after its
// scheme.
func TestRedactForms(t *testing.T) {
	t.Parallel()
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			s := expand(t, f.dsn)
			hide := append([]string(nil), f.hide...)
			for i, h := range hide {
				hide[i] = expand(t, h)
			}
			require.Equal(t, f.parses, dsn.Check(s) == nil, "Check: %v", dsn.Check(s))
			desc := dsn.Describe(s)
			noLeak(t, desc, hide, "Describe")
			if !f.parses {
				require.Contains(t, []string{"postgres://(a DSN that does not parse)", "(a DSN that does not parse)"}, desc)
			}

			var errs []error
			_, perr := pgconn.ParseConfig(s)
			switch {
			case perr != nil:
				errs = append(errs, perr)
			case f.parses: // rotator never connects with a DSN Check refuses
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := pgconn.Connect(ctx, s) // the password is wrong: admin does not exist
				require.Error(t, err)
				errs = append(errs, err)
				closed := strings.Replace(s, expand(t, "{port}"), "1", 1)
				_, err = pgconn.Connect(ctx, closed)
				require.Error(t, err)
				errs = append(errs, dsn.Error(err, closed))
			}
			p := f.hide[0]
			errs = append(errs,
				fmt.Errorf("a driver that quotes the DSN: %s; %q", s, s),
				fmt.Errorf("and the password: %s %q %s %s", p, p, url.QueryEscape(p), url.PathEscape(p)))
			for i, err := range errs {
				red := dsn.Error(err, s)
				noLeak(t, red.Error(), hide, fmt.Sprintf("error %d", i))
				if perr != nil && i == 0 {
					require.ErrorIs(t, red, dsn.ErrInvalid)
					noLeak(t, red.Error(), []string{"admin", expand(t, "{host}"), "app"}, "parse error")
				} else {
					require.True(t, errors.Is(red, err) || errors.Is(red, dsn.ErrInvalid))
				}
				b, _ := json.Marshal(map[string]string{"error": red.Error()})
				noLeak(t, string(b), hide, "JSON")
				var log strings.Builder
				slog.New(slog.NewJSONHandler(&log, nil)).Error("x", "err", red)
				noLeak(t, log.String(), hide, "log")
			}
		})
	}
}

// Secrets feed the engine's and the notifier's redaction: they hold the
// password as parsed, as written, and in its escaped forms.
func TestSecrets(t *testing.T) {
	t.Parallel()
	has := func(s string, want ...string) {
		t.Helper()
		var got []string
		for _, v := range dsn.Secrets(s) {
			got = append(got, v.Reveal())
		}
		for _, w := range want {
			require.Contains(t, got, w, s)
		}
	}
	has("postgres://a:Sup3r@Tail@h/db", "Sup3r@Tail", "Sup3r", "Sup3r%40Tail")
	has("postgres://a:p%40ss@h/db", "p@ss", "p%40ss")
	has(`host=h password = 'it\'s me'`, "it's me", `it\'s me`, `it\\'s me`[:0]+`it\'s me`)
	has(`host=h password=a\ b`, "a b", `a\ b`)
	require.Empty(t, dsn.Secrets("postgres://a@h/db"))
}

// FuzzRedact: for any input, nothing panics; a DSN that parses never has
// its password in Describe, in a redacted error quoting the DSN or the
// password, or in Error of its parse; a DSN that does not parse shows
// nothing after its scheme.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"postgres://admin:Sup3r@PartOfThePassword@host/app",
		"host=h password = Sup3rS3cret port=x",
		`host=h password=Sup3r\ S3cret port=5432`,
		"postgres//user:pw@host/db",
		"postgres://u:p%40ss@h:5432/db?sslmode=disable&password=x%20y",
		`user=u password='a\'b c' dbname=d`,
		"postgresql://u:pw@[::1]:5432,h2:5433/db",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		desc := dsn.Describe(s)
		quoted := dsn.Error(fmt.Errorf("echo %s %q", s, s), s).Error()
		_, perr := pgconn.ParseConfig(s)
		parseMsg := ""
		if perr != nil {
			parseMsg = dsn.Error(perr, s).Error()
		}
		cfg, err := pgconn.ParseConfig(s)
		if err == nil && cfg.Password != "" {
			p := cfg.Password
			if dsn.Check(s) == nil {
				// (Otherwise Describe is a fixed text, checked below.)
				noLeak(t, desc, []string{p}, "Describe")
			}
			noLeak(t, quoted, []string{p}, "quoting error")
			noLeak(t, dsn.Error(fmt.Errorf("pw %s", p), s).Error(), []string{p}, "password error")
		}
		if dsn.Check(s) != nil {
			require.True(t, strings.HasSuffix(desc, "(a DSN that does not parse)"), desc)
			require.LessOrEqual(t, len(desc), len("(a DSN that does not parse)")+len(s), desc)
			if perr != nil {
				require.ErrorIs(t, dsn.Error(perr, s), dsn.ErrInvalid)
				require.NotContains(t, parseMsg, "`", "pgconn's text (which quotes the DSN) is not used")
			}
		}
	})
}
