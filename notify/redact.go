package notify

import (
	"cmp"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"

	"github.com/rotator/rotator/internal/secret"
)

// Redactor removes secret material from text before it leaves the process.
type Redactor interface {
	Redact(s string) string
}

// replacerRedactor replaces known plaintexts with secret.Redacted.
type replacerRedactor struct{ r *strings.Replacer }

// NewRedactor returns a Redactor that replaces every occurrence of each
// value with REDACTED, together with the forms in which a value typically
// turns up in an error: URL-escaped (a DSN, a query string) and base64
// (a basic-auth header). Empty values are ignored; longer values are
// replaced first, so a value that contains another is removed whole.
func NewRedactor(values ...secret.Value) Redactor {
	seen := map[string]bool{}
	var olds []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			olds = append(olds, s)
		}
	}
	for _, v := range values {
		p := v.Reveal()
		if p == "" {
			continue
		}
		add(p)
		add(url.QueryEscape(p))
		add(url.PathEscape(p))
		add(base64.StdEncoding.EncodeToString([]byte(p)))
		add(base64.RawURLEncoding.EncodeToString([]byte(p)))
	}
	// strings.Replacer tries the old strings in argument order at each
	// position: longest first.
	slices.SortStableFunc(olds, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(olds))
	for _, o := range olds {
		pairs = append(pairs, o, secret.Redacted)
	}
	return replacerRedactor{strings.NewReplacer(pairs...)}
}

func (r replacerRedactor) Redact(s string) string { return r.r.Replace(s) }

// Redactors applies each non-nil redactor in turn.
func Redactors(rs ...Redactor) Redactor { return multiRedactor(rs) }

type multiRedactor []Redactor

func (m multiRedactor) Redact(s string) string {
	for _, r := range m {
		if r != nil {
			s = r.Redact(s)
		}
	}
	return s
}

// redactEvent returns e with every free-text field passed through r and
// e.Redactor, and e.Redactor dropped. Kind and Step are typed names, not
// free text.
func redactEvent(e Event, r Redactor) Event {
	rr := Redactors(r, e.Redactor)
	e.Redactor = nil
	e.Error = rr.Redact(e.Error)
	e.Detail = rr.Redact(e.Detail)
	if e.Commands != nil {
		cmds := make([]string, len(e.Commands))
		for i, c := range e.Commands {
			cmds[i] = rr.Redact(c)
		}
		e.Commands = cmds
	}
	return e
}
