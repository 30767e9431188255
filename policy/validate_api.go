package policy

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

var (
	fieldNameRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	namePrefixRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{0,32}$`)
	placeholderRE = regexp.MustCompile(`\{([a-z_]+)\}`)
	headerNameRE  = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
)

// Placeholders the http_api calls may use, and the secret ones among them
// (never in a URL, which ends up in logs).
var (
	placeholders       = []string{"name", "key_id", "secret_id", "run_id", "management", "key"}
	secretPlaceholders = []string{"management", "key"}
	httpMethods        = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
)

func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// apiRotator checks the http_api and token rotators.
func (v *validator) apiRotator(path string, r RotatorSpec) {
	if h := r.HTTPAPI; h != nil {
		v.httpAPI(path+".http_api", h)
	}
	if t := r.Token; t != nil {
		p := path + ".token"
		if !namePrefixRE.MatchString(t.Prefix) {
			v.errf(p+".prefix", "expected at most 32 letters, digits, ., _ and -, got %q", t.Prefix)
		}
		if v.has(p+".length") && (t.Length < MinTokenLength || t.Length > MaxTokenLength) {
			v.errf(p+".length", "must be between %d and %d random characters, got %d", MinTokenLength, MaxTokenLength, t.Length)
		}
		v.fieldName(p+".field", t.Field)
	}
}

// fieldName checks the name a secret is published under.
func (v *validator) fieldName(path, name string) {
	switch {
	case name == "":
	case !fieldNameRE.MatchString(name):
		v.errf(path, "expected lowercase letters, digits and _, starting with a letter (such as api_key), got %q", name)
	case name != "password" && slices.Contains(reservedConnectionKeys, name):
		v.errf(path, "%q is written by rotator itself beside the secret; choose another name such as api_key", name)
	}
}

func (v *validator) httpAPI(p string, h *HTTPAPISpec) {
	v.enum(p+".preset", h.Preset, Presets()...)
	if h.BaseURL != "" {
		v.url(p+".base_url", h.BaseURL)
	}
	switch {
	case h.Management == nil && h.ManagementSecret == "":
		v.errf(p+".management", "required: {env: NAME} or {file: PATH} holding the management credential, or management_secret: the id of another managed secret")
	case h.Management != nil && h.ManagementSecret != "":
		v.errf(p+".management_secret", "set management or management_secret, not both")
	case h.ManagementSecret != "":
		if v.ids == nil {
			// Once per file: a loop over the secrets for each reference
			// made a file of n secrets cost n² (docs/performance.md).
			v.ids = make(map[string]bool, len(v.f.Secrets))
			for _, s := range v.f.Secrets {
				v.ids[s.ID] = true
			}
		}
		switch path := p + ".management_secret"; {
		case v.ids[h.ManagementSecret] || v.muted(path) || v.laterLookups:
		case v.x != nil && v.x.other != nil:
			// A piece of a large file: the secret may be in another
			// piece; looked up once every id is known (stream.go).
			e := Errorf(v.where(path), path, "%s", unknownSecret(h.ManagementSecret))
			v.d.errs = append(v.d.errs, e)
			v.x.lookups = append(v.x.lookups, lookup{id: h.ManagementSecret, err: e})
		default:
			v.errf(path, "%s", unknownSecret(h.ManagementSecret))
		}
	}
	if !namePrefixRE.MatchString(h.NamePrefix) {
		v.errf(p+".name_prefix", "expected at most 32 letters, digits, ., _ and -, got %q", h.NamePrefix)
	}
	v.fieldName(p+".field", h.Field)
	if h.Timeout != nil && *h.Timeout <= 0 {
		v.errf(p+".timeout", "must be longer than 0s (such as 30s)")
	}
	if h.Preset == "" {
		for _, c := range []struct {
			name string
			call *HTTPCallSpec
		}{{"create", h.Create}, {"verify", h.Verify}, {"revoke", h.Revoke}} {
			if c.call == nil {
				v.errf(p+"."+c.name, "required without a preset: the %s call (method, url, ...)", c.name)
			}
		}
	}
	base := h.BaseURL != "" || h.Preset != ""
	calls := []struct {
		name string
		call *HTTPCallSpec
	}{{"create", h.Create}, {"verify", h.Verify}, {"revoke", h.Revoke}, {"restore", h.Restore}, {"list", h.List}, {"last_used", h.LastUsed}}
	for _, c := range calls {
		if c.call != nil {
			v.httpCall(p+"."+c.name, c.name, c.call, base)
		}
	}
}

func (v *validator) httpCall(p, name string, c *HTTPCallSpec, base bool) {
	if c.Method == "" {
		v.errf(p+".method", "required: one of %s", strings.Join(httpMethods, ", "))
	} else {
		v.enum(p+".method", c.Method, httpMethods...)
	}
	switch {
	case c.URL == "":
		v.errf(p+".url", "required: an http(s) URL, or a path starting with / under base_url")
	case strings.HasPrefix(c.URL, "/"):
		if !base {
			v.errf(p+".url", "a path needs base_url (or a preset): set base_url or write the whole URL")
		}
	default:
		v.url(p+".url", strings.NewReplacer("{", "", "}", "").Replace(c.URL))
	}
	v.placeholders(p+".url", c.URL, false)
	for _, k := range sortedKeys(c.Headers) {
		if !headerNameRE.MatchString(k) {
			v.errf(p+".headers."+k, "is not a valid HTTP header name")
		}
		v.placeholders(p+".headers."+k, c.Headers[k], true)
	}
	v.placeholders(p+".body", c.Body, true)
	for i, st := range c.Status {
		if st < 100 || st > 599 {
			v.errf(fmt.Sprintf("%s.status[%d]", p, i), "expected an HTTP status between 100 and 599, got %d", st)
		}
	}
	for i, st := range c.GoneStatus {
		if st < 100 || st > 599 {
			v.errf(fmt.Sprintf("%s.gone_status[%d]", p, i), "expected an HTTP status between 100 and 599, got %d", st)
		}
	}
	uses := func(ph string) bool {
		if strings.Contains(c.Body, "{"+ph+"}") {
			return true
		}
		for _, h := range c.Headers {
			if strings.Contains(h, "{"+ph+"}") {
				return true
			}
		}
		return false
	}
	switch name {
	case "create":
		if c.KeyPath == "" {
			v.errf(p+".key_path", "required: where the new key is in the JSON answer, such as key or data.api_key")
		}
		if c.IDPath == "" {
			v.errf(p+".id_path", "required: where the new key's id is in the JSON answer, such as data.id")
		}
	case "verify":
		if !uses("key") {
			v.errf(p, "must send the key being verified: put {key} in a header or the body (such as Authorization: Bearer {key})")
		}
	case "revoke", "restore":
		if !strings.Contains(c.URL, "{key_id}") && !strings.Contains(c.Body, "{key_id}") {
			v.errf(p, "must name the key: put {key_id} in the url or the body")
		}
	case "list":
		for _, f := range []struct{ key, val, hint string }{{"items_path", c.ItemsPath, "data"}, {"id_path", c.IDPath, "id"}, {"name_path", c.NamePath, "name"}} {
			if f.val == "" {
				v.errf(p+"."+f.key, "required for list: such as %s", f.hint)
			}
		}
	case "last_used":
		if (c.LastUsedPath == "") == (c.UsagePath == "") {
			v.errf(p, "set exactly one of last_used_path (a time) or usage_path (a usage counter)")
		}
	}
}

// placeholders checks the {name} placeholders of a template.
func (v *validator) placeholders(path, tmpl string, secretOK bool) {
	for _, m := range placeholderRE.FindAllStringSubmatch(tmpl, -1) {
		switch {
		case !slices.Contains(placeholders, m[1]):
			v.errf(path, "unknown placeholder {%s}; the placeholders are {%s}", m[1], strings.Join(placeholders, "}, {"))
		case !secretOK && slices.Contains(secretPlaceholders, m[1]):
			v.errf(path, "{%s} is secret and may not appear in a URL (URLs are logged): send it in a header or the body", m[1])
		}
	}
}

// check validates one entry of a secret's checks.
func (v *validator) check(p string, s *SecretSpec, c *CheckSpec) {
	switch n := countSet(c.Delay != nil, c.HTTP != nil, c.LastUsed != nil, c.Sessions != nil); {
	case n == 0:
		v.errf(p, "must set one kind of check: delay, http, last_used or sessions")
		return
	case n > 1:
		v.errf(p, "must set exactly one kind of check (delay, http, last_used or sessions) per entry; write one entry each")
	}
	if h := c.HTTP; h != nil {
		hp := p + ".http"
		if len(h.URLs) == 0 {
			v.errf(hp+".urls", "required: at least one client URL that reports the version it uses")
		}
		for i, u := range h.URLs {
			v.url(fmt.Sprintf("%s.urls[%d]", hp, i), u)
		}
		v.enum(hp+".match", h.Match, MatchFingerprint, MatchVersion)
		if h.JSONPath != "" && h.Header != "" {
			v.errf(hp, "set json_path or header, not both")
		}
		if h.Header != "" && !headerNameRE.MatchString(h.Header) {
			v.errf(hp+".header", "is not a valid HTTP header name")
		}
		if h.Timeout != nil && *h.Timeout <= 0 {
			v.errf(hp+".timeout", "must be longer than 0s (such as 5s)")
		}
		v.pollInterval(hp+".interval", h.Interval)
	}
	if l := c.LastUsed; l != nil {
		lp := p + ".last_used"
		if l.UnusedFor == nil {
			v.errf(lp+".unused_for", "required: how long the old key must go unused, such as 1h")
		} else if *l.UnusedFor <= 0 {
			v.errf(lp+".unused_for", "must be longer than 0s (such as 1h)")
		}
		h := s.Rotator.HTTPAPI
		if s.Rotator.AWSIAM == nil && (h == nil || (h.LastUsed == nil && !presetHas(h.Preset, "last_used"))) {
			v.errf(lp, "needs an http_api rotator with a last_used call (or a preset that has one), or an awsiam rotator: the provider must say when a key was last used")
		}
		v.pollInterval(lp+".interval", l.Interval)
	}
	if c.Sessions != nil {
		sp := p + ".sessions"
		pg := s.Rotator.Postgres
		switch {
		case pg == nil:
			v.errf(sp, "needs a postgres rotator: it paces the count of the old role's sessions")
		case pg.Mode == ModeSingleRole:
			v.errf(sp, "single_role cannot tell sessions of the old password from the new: remove it, or use blue_green")
		}
		if c != firstSessions(s.Checks) {
			v.errf(sp, "a secret has at most one sessions entry; this is a second one")
		}
		v.pollInterval(sp+".interval", c.Sessions.Interval)
	}
}

func firstSessions(cs []*CheckSpec) *CheckSpec {
	for _, c := range cs {
		if c.Sessions != nil {
			return c
		}
	}
	return nil
}

// pollInterval checks the interval of a polling check.
func (v *validator) pollInterval(path string, d *Duration) {
	if d == nil || !v.has(path) {
		return
	}
	if d.D() < MinPollInterval || d.D() > MaxPollInterval {
		v.errf(path, "must be between %s and %s (how often the check is asked again while it does not pass), got %s",
			Duration(MinPollInterval), Duration(MaxPollInterval), *d)
	}
}

// unknownSecret is the message for a management_secret that names no
// secret of the file.
func unknownSecret(id string) string {
	return fmt.Sprintf("unknown secret %q: name the id of another secret in this file", id)
}
