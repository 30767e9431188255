package apikey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/internal/jsonpath"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// maxBody bounds what is read of an answer.
const maxBody = 1 << 20

// errGone is a call answered with one of its gone statuses: the key does
// not exist.
var errGone = fmt.Errorf("key does not exist at the provider: %w", rotation.ErrNotFound)

// vars are the values of a call's placeholders.
type vars struct {
	name, keyID, secretID, runID string
	management, key              secret.Value
}

func (v vars) plain() map[string]string {
	return map[string]string{"name": v.name, "key_id": v.keyID, "secret_id": v.secretID, "run_id": v.runID}
}

// expand replaces the placeholders of tmpl; esc escapes each value for
// where it goes. Secret placeholders are expanded only when withSecrets.
func (v vars) expand(tmpl string, esc func(string) string, withSecrets bool) string {
	pairs := []string{}
	for k, x := range v.plain() {
		pairs = append(pairs, "{"+k+"}", esc(x))
	}
	if withSecrets {
		pairs = append(pairs, "{management}", esc(v.management.Reveal()), "{key}", esc(v.key.Reveal()))
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

func identity(s string) string { return s }

// answer is a provider's answer to a call.
type answer struct {
	status int
	body   []byte
}

// callError is a call that failed. Its text names the call, the method,
// the URL (which never holds a secret) and the status, with a redacted
// excerpt of the answer.
type callError struct {
	call, method, url string
	status            int
	excerpt           string
	err               error
}

func (e *callError) Error() string {
	switch {
	case e.err != nil:
		return fmt.Sprintf("%s call %s %s: %v", e.call, e.method, e.url, e.err)
	case e.excerpt != "":
		return fmt.Sprintf("%s call %s %s: HTTP %d: %s", e.call, e.method, e.url, e.status, e.excerpt)
	}
	return fmt.Sprintf("%s call %s %s: HTTP %d", e.call, e.method, e.url, e.status)
}

func (e *callError) Unwrap() error { return e.err }

// do makes one call. A gone status returns errGone; any other status that
// is not a success is a *callError (Permanent for 400, 401, 403, 405 and
// 422, which a retry will not change).
func (p *Provider) do(ctx context.Context, name string, c *policy.HTTPCallSpec, v vars) (answer, error) {
	if c == nil {
		return answer{}, fmt.Errorf("%s call is not configured: %w", name, rotation.ErrUnsupported)
	}
	raw := v.expand(c.URL, url.PathEscape, false)
	if strings.HasPrefix(raw, "/") {
		raw = strings.TrimSuffix(p.spec.BaseURL, "/") + raw
	}
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(v.expand(c.Body, jsonEscape, true))
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.Method, raw, body)
	if err != nil {
		return answer{}, rotation.Permanent(&callError{call: name, method: c.Method, url: raw, err: err})
	}
	for k, h := range c.Headers {
		req.Header.Set(k, v.expand(h, identity, true))
	}
	if c.Body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if re, ok := httpclient.Refused(err); ok {
		// The *url.Error around it quotes the redirect's target whole.
		// Its path may echo what was sent: redacted like everything else.
		re = &httpclient.RedirectError{From: rotation.Redact(re.From, v.management, v.key),
			To: rotation.Redact(re.To, v.management, v.key), Reason: re.Reason}
		return answer{}, rotation.Permanent(&callError{call: name, method: c.Method, url: raw, err: re})
	}
	if err != nil {
		// *url.Error names the URL, which holds no secret.
		return answer{}, &callError{call: name, method: c.Method, url: raw, err: redactErr(err, v)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{}, &callError{call: name, method: c.Method, url: raw, err: redactErr(err, v)}
	}
	a := answer{status: resp.StatusCode, body: data}
	gone := c.GoneStatus
	if len(gone) == 0 {
		gone = []int{http.StatusNotFound, http.StatusGone}
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(c.Status) > 0 {
		ok = slices.Contains(c.Status, resp.StatusCode)
	}
	switch {
	case ok:
		return a, nil
	case slices.Contains(gone, resp.StatusCode):
		return a, errGone
	}
	ce := &callError{call: name, method: c.Method, url: raw, status: resp.StatusCode}
	// The answer to a create call, or any success status the policy did
	// not list, may hold a new key that is not known yet and so cannot be
	// redacted: it is never quoted.
	if name != "create" && (resp.StatusCode < 200 || resp.StatusCode >= 300) {
		ce.excerpt = excerpt(data, v)
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusUnprocessableEntity:
		return a, rotation.Permanent(ce)
	}
	return a, ce
}

// excerpt is the start of an error answer for people: the provider's
// message, with every secret of the call replaced, one line, at most 200
// characters.
func excerpt(body []byte, v vars) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	s = rotation.Redact(s, v.management, v.key)
	// Also their JSON-escaped forms, as an answer may quote them.
	for _, x := range []secret.Value{v.management, v.key} {
		if b, err := json.Marshal(x.Reveal()); err == nil && len(b) > 2 {
			s = rotation.Redact(s, secret.New(string(b[1:len(b)-1])))
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func redactErr(err error, v vars) error {
	return errors.New(rotation.Redact(err.Error(), v.management, v.key))
}

// field reads a text value out of a JSON answer.
func field(a answer, path string) (string, bool) {
	doc, err := jsonpath.Decode(a.body)
	if err != nil {
		return "", false
	}
	s, err := jsonpath.String(doc, path)
	return s, err == nil && s != ""
}
