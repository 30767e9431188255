// Package dsn is the one place that shows a Postgres connection string
// (DSN) in a message or redacts one from a text. Every admin DSN, the
// state database's URL and any other DSN rotator handles go through it.
//
// # What is secret
//
// The password a DSN holds is taken from the parsed configuration
// (pgconn.ParseConfig, the same parser that connects), not found by
// matching text: `postgres://admin:Sup3r@PartOfThePassword@host/app`,
// `password = Sup3rS3cret` (libpq allows spaces around =), a quoted value
// or a backslash-escaped space are all read as libpq reads them. Because
// a person may have meant something else than the parser read (the first
// "@" ends the user info, so the tail of an unescaped password lands in
// the host), the password candidates of a lexical reading (the user info
// up to the first and the last "@", ?password= and ?sslpassword= values,
// every key=value password and sslpassword) are secret too. Each is
// redacted in the forms it takes in text: as written, %-escaped (path,
// query, user info), quoted and backslash-escaped as in key=value,
// JSON- and Go-quoted, base64.
//
// # What is shown
//
// Describe names a DSN that parses by user, host, port and database,
// never its password; a DSN that does not parse (or whose host holds an
// "@", which no host name does) is named by its scheme alone: nothing
// after the scheme is printed, since what a broken DSN holds cannot be
// told apart. Error turns an error about a DSN into one whose text has
// every secret of the DSN redacted; a parse error is replaced whole by a
// fixed message, because pgconn's quotes the DSN with a best-effort mask.
package dsn

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rotator/rotator/internal/secret"
)

// ErrInvalid is what Check's and Error's parse errors wrap.
var ErrInvalid = errors.New("not a valid Postgres connection string")

// parse parses s as pgconn does, and refuses a host holding "@".
func parse(s string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("%w: it parses neither as a URL (postgres://user:password@host:port/database, with special characters of the password %%-escaped) nor as key=value pairs; it is not shown, as it may hold a password", ErrInvalid)
	}
	hosts := []string{cfg.Host}
	for _, fb := range cfg.Fallbacks {
		hosts = append(hosts, fb.Host)
	}
	for _, h := range hosts {
		if strings.Contains(h, "@") {
			return nil, fmt.Errorf("%w: its host holds an \"@\": a password with \"@\" must be written %%40 in a URL; it is not shown, as it may hold a password", ErrInvalid)
		}
	}
	return cfg, nil
}

// Check reports whether s parses, with an error that shows nothing of s.
func Check(s string) error {
	_, err := parse(s)
	return err
}

// scheme returns "postgres://" (or whatever letters precede "://"), or "".
var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// Describe names s for a message: scheme://user@host:port/database for a
// DSN that parses (the password never), the scheme alone for one that
// does not.
func Describe(s string) string {
	cfg, err := parse(s)
	if err != nil {
		if sc := schemeRE.FindString(s); sc != "" {
			return sc + "(a DSN that does not parse)"
		}
		return "(a DSN that does not parse)"
	}
	u := url.URL{Scheme: "postgres", Host: cfg.Host, Path: "/" + cfg.Database}
	if cfg.Port != 0 {
		u.Host = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		u.Host = "" // a Unix socket directory
		u.RawQuery = "host=" + url.QueryEscape(cfg.Host)
	}
	if cfg.User != "" {
		u.User = url.User(cfg.User)
	}
	return NewRedactor(s).Redact(u.String())
}

// Secrets returns every secret s holds (see the package documentation),
// as written and in the forms it takes in text, longest first. A DSN
// with no password gives none.
func Secrets(s string) []secret.Value {
	var out []secret.Value
	for _, f := range forms(candidates(s)) {
		out = append(out, secret.New(f))
	}
	return out
}

// Redactor replaces a DSN's secrets in text.
type Redactor struct{ r *strings.Replacer }

// NewRedactor returns the Redactor of DSN s.
func NewRedactor(s string) Redactor {
	fs := forms(candidates(s))
	pairs := make([]string, 0, 2*len(fs))
	for _, f := range fs {
		pairs = append(pairs, f, secret.Redacted)
	}
	return Redactor{strings.NewReplacer(pairs...)}
}

// Redact returns text with every secret of the DSN replaced by REDACTED.
func (r Redactor) Redact(text string) string { return r.r.Replace(text) }

// redacted is an error whose text is redacted; it unwraps to the original
// so errors.Is and errors.As still work.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// Error returns err with every secret of DSN s redacted from its text. A
// pgconn parse error (which quotes the DSN) is replaced by Check's
// message and does not unwrap to it. Nil stays nil.
func Error(err error, s string) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if cerr := Check(s); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: it is not shown, as it may hold a password", ErrInvalid)
	}
	return &redacted{msg: NewRedactor(s).Redact(err.Error()), err: err}
}

// candidates are the passwords s may hold: the parsed one and those of a
// lexical reading.
func candidates(s string) []string {
	var c []string
	if cfg, err := pgconn.ParseConfig(s); err == nil {
		c = append(c, cfg.Password)
	}
	c = append(c, urlCandidates(s)...)
	c = append(c, kvCandidates(s)...)
	return c
}

// urlCandidates reads s as a URL, loosely: after the first "//" (a
// scheme or not), the user info up to the first and up to the last "@"
// before the path, and the password query values.
func urlCandidates(s string) []string {
	i := strings.Index(s, "//")
	if i < 0 {
		return nil
	}
	rest := s[i+2:]
	auth, query := rest, ""
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		auth, query = rest[:q], rest[q+1:]
	}
	var c []string
	// The user info ends at an "@"; the path starts after it. Try both
	// readings of an unescaped "@" in the password.
	for _, at := range []int{strings.IndexByte(auth, '@'), strings.LastIndexByte(auth, '@')} {
		if at < 0 {
			continue
		}
		if colon := strings.IndexByte(auth[:at], ':'); colon >= 0 {
			pw := auth[colon+1 : at]
			c = append(c, unescapes(pw)...)
			// The parts an unescaped "@" splits it into: a host
			// lookup error quotes the tail alone.
			if parts := strings.Split(pw, "@"); len(parts) > 1 {
				c = append(c, parts...)
			}
		}
	}
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if k == "password" || k == "sslpassword" {
			c = append(c, unescapes(v)...)
		}
	}
	return c
}

// unescapes returns v and its %-decoded forms.
func unescapes(v string) []string {
	out := []string{v}
	if d, err := url.PathUnescape(v); err == nil {
		out = append(out, d)
	}
	if d, err := url.QueryUnescape(v); err == nil {
		out = append(out, d)
	}
	return out
}

// kvCandidates reads s as libpq's key=value pairs (spaces around "=",
// values quoted with ' or with backslash escapes) and returns the values
// of password and sslpassword, decoded and as written.
func kvCandidates(s string) []string {
	var c []string
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for i < len(s) {
		skip()
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skip()
		if i >= len(s) || s[i] != '=' {
			if i == start {
				i++ // not a key: move on
			}
			continue
		}
		i++ // '='
		skip()
		vstart := i
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
			if i < len(s) {
				i++ // closing quote
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		if k := strings.ToLower(key); k == "password" || k == "sslpassword" {
			c = append(c, val.String(), s[vstart:i], strings.Trim(s[vstart:i], "'"))
		}
	}
	return c
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// forms returns each non-empty candidate in the forms it takes in text,
// without duplicates, longest first (a strings.Replacer tries the old
// strings in argument order at each position).
func forms(cands []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, p := range cands {
		if p == "" {
			continue
		}
		add(p)
		add(url.PathEscape(p))
		add(url.QueryEscape(p))
		add(strings.TrimPrefix(url.UserPassword("u", p).String(), "u:"))
		kv := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p)
		add(kv)
		add(strings.NewReplacer(`\`, `\\`, ` `, `\ `).Replace(p))
		if b, err := json.Marshal(p); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		q := strconv.Quote(p)
		add(q[1 : len(q)-1])
		add(base64.StdEncoding.EncodeToString([]byte(p)))
		add(base64.RawURLEncoding.EncodeToString([]byte(p)))
	}
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return out
}
