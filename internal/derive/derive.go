// Package derive renders the derived fields of a publish target: a small
// template of {placeholders} filled from a credential and its connection
// settings, such as
//
//	postgres://{username}:{password}@{host}:{port}/{database}?sslmode={sslmode}
//
// A template that starts with a URL scheme ("postgres://", "https://") is
// a URL: each placeholder is escaped for the part of the URL it stands in,
// found from the template's literal text (never from the values): in the
// user info (before a literal @ of the authority) as URL user info, in the
// path with path escaping, in the query and fragment with query escaping;
// in the host a value is inserted as it is, but one holding / ? # @ or a
// space is refused. Any other template is plain text: values are inserted
// as they are.
//
// Syntax: {name} with name of lowercase letters, digits and _, starting
// with a letter; {{ and }} stand for a literal { and }.
package derive

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Part is where in a URL a placeholder stands, which decides its escaping.
type Part int

// The parts of a template.
const (
	Plain    Part = iota // not a URL: inserted as it is
	Scheme               // before "://": inserted as it is
	UserInfo             // user info: url.User escaping
	Host                 // host and port: inserted as it is, checked
	Path                 // path: url.PathEscape
	Query                // query and fragment: url.QueryEscape
)

func (p Part) String() string {
	return [...]string{"text", "scheme", "user info", "host", "path", "query"}[p]
}

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
)

// Error is a syntax error at a byte offset of the template.
type Error struct {
	Offset int // 0-based byte offset in the template
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("character %d: %s", e.Offset+1, e.Msg) }

type seg struct {
	lit  string // literal text, when name is ""
	name string
	part Part
	off  int
}

// Template is a parsed template.
type Template struct {
	src  string
	url  bool
	segs []seg
}

// Parse parses a template. Errors are *Error.
func Parse(src string) (*Template, error) {
	t := &Template{src: src}
	var lit strings.Builder
	litStart := 0
	flush := func(end int) {
		if lit.Len() > 0 {
			t.segs = append(t.segs, seg{lit: lit.String(), off: litStart})
			lit.Reset()
		}
		litStart = end
	}
	for i := 0; i < len(src); {
		switch c := src[i]; {
		case c == '{' && strings.HasPrefix(src[i:], "{{"):
			lit.WriteByte('{')
			i += 2
		case c == '}' && strings.HasPrefix(src[i:], "}}"):
			lit.WriteByte('}')
			i += 2
		case c == '}':
			return nil, &Error{i, `a "}" without its "{" (write "}}" for a literal "}")`}
		case c == '{':
			end := strings.IndexByte(src[i+1:], '}')
			if end < 0 {
				return nil, &Error{i, `a "{" is not closed by "}" (write "{{" for a literal "{")`}
			}
			name := src[i+1 : i+1+end]
			if !nameRE.MatchString(name) {
				return nil, &Error{i, fmt.Sprintf("placeholder {%s}: expected a name of lowercase letters, digits and _, starting with a letter", name)}
			}
			flush(i)
			t.segs = append(t.segs, seg{name: name, off: i})
			i += end + 2
			litStart = i
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush(len(src))
	t.parts()
	return t, nil
}

// parts decides the Part of each placeholder from the literal text: a
// skeleton of the template with each placeholder as one NUL byte.
func (t *Template) parts() {
	var sk strings.Builder
	at := make([]int, len(t.segs)) // skeleton offset of each placeholder
	for i, s := range t.segs {
		if s.name == "" {
			sk.WriteString(s.lit)
		} else {
			at[i] = sk.Len()
			sk.WriteByte(0)
		}
	}
	k := sk.String()
	m := schemeRE.FindStringIndex(k)
	if m == nil {
		return // plain text
	}
	t.url = true
	auth := m[1] // authority start
	authEnd := len(k)
	if j := strings.IndexAny(k[auth:], "/?#"); j >= 0 {
		authEnd = auth + j
	}
	userEnd := auth // no user info
	if j := strings.LastIndexByte(k[auth:authEnd], '@'); j >= 0 {
		userEnd = auth + j
	}
	query := len(k)
	if j := strings.IndexAny(k[authEnd:], "?#"); j >= 0 {
		query = authEnd + j
	}
	for i := range t.segs {
		if t.segs[i].name == "" {
			continue
		}
		switch p := at[i]; {
		case p < auth:
			t.segs[i].part = Scheme
		case p < userEnd:
			t.segs[i].part = UserInfo
		case p < authEnd:
			t.segs[i].part = Host
		case p < query:
			t.segs[i].part = Path
		default:
			t.segs[i].part = Query
		}
	}
}

// Source returns the template as written.
func (t *Template) Source() string { return t.src }

// IsURL reports whether the template is a URL (starts with a scheme).
func (t *Template) IsURL() bool { return t.url }

// Placeholder is one {name} of a template.
type Placeholder struct {
	Name   string
	Part   Part
	Offset int
}

// Placeholders returns the placeholders in order of appearance.
func (t *Template) Placeholders() []Placeholder {
	var out []Placeholder
	for _, s := range t.segs {
		if s.name != "" {
			out = append(out, Placeholder{s.name, s.part, s.off})
		}
	}
	return out
}

// Uses reports whether the template has the placeholder name.
func (t *Template) Uses(name string) bool {
	for _, s := range t.segs {
		if s.name == name {
			return true
		}
	}
	return false
}

// Render fills the template. A placeholder without a value, or a host
// value that would change the URL's structure, is an error naming the
// placeholder, never its value.
func (t *Template) Render(values map[string]string) (string, error) {
	var b strings.Builder
	for _, s := range t.segs {
		if s.name == "" {
			b.WriteString(s.lit)
			continue
		}
		v, ok := values[s.name]
		if !ok {
			return "", fmt.Errorf("template %q: no value for {%s}", t.src, s.name)
		}
		switch s.part {
		case UserInfo:
			b.WriteString(url.User(v).String())
		case Host:
			if strings.ContainsAny(v, "/?#@ \t\r\n") {
				return "", fmt.Errorf("template %q: the value of {%s} may not hold / ? # @ or spaces in the host part of a URL", t.src, s.name)
			}
			b.WriteString(v)
		case Path:
			b.WriteString(url.PathEscape(v))
		case Query:
			b.WriteString(url.QueryEscape(v))
		default:
			b.WriteString(v)
		}
	}
	return b.String(), nil
}
