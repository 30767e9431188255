// Package httpclient builds the one kind of HTTP client rotator uses for
// every outgoing call (API key providers, webhooks, Slack, http checks):
// one that never follows a redirect to another origin.
//
// # Redirects
//
// A call from rotator carries secrets: a management key or a new API key
// in headers or in the body, a webhook signature, a Slack token. Go's
// default client follows up to ten redirects, re-sends custom headers to
// any host, re-sends the body on 307/308, and allows https -> http. A
// client from New (or one passed through Safe) follows a redirect only
// when it stays on the same scheme, host and port as the request it
// answers, at most MaxRedirects times; any other redirect ends the call
// with a *RedirectError that names the request's URL without its user
// info, query or fragment, and the redirect's target by its origin alone
// (a hostile server chooses the rest, and may echo a secret there).
package httpclient

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// MaxRedirects bounds the same-origin redirects a call follows.
const MaxRedirects = 5

// ErrRedirect is what every refused redirect wraps (errors.Is).
var ErrRedirect = errors.New("redirect refused")

// RedirectError is a redirect the client refused. From is the request's
// URL without user info, query or fragment; To is the target's origin
// (scheme://host:port) alone.
type RedirectError struct {
	From, To string
	Reason   string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("%s: %s redirected to %s (%s); rotator does not follow redirects that leave the origin, as the request carries secrets: point the configuration at the final URL",
		ErrRedirect, e.From, e.To, e.Reason)
}

func (e *RedirectError) Unwrap() error { return ErrRedirect }

// New returns a client with timeout (0: none of its own; the caller's
// context bounds each call) and the safe redirect policy.
func New(timeout time.Duration) *http.Client {
	return Safe(&http.Client{Timeout: timeout})
}

// Safe returns a copy of c (of a zero client when c is nil) with the safe
// redirect policy, whatever c's own was. c's transport is wrapped, not
// copied.
func Safe(c *http.Client) *http.Client {
	var cp http.Client
	if c != nil {
		cp = *c
	}
	if _, ok := cp.Transport.(guard); !ok {
		base := cp.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		cp.Transport = guard{base: base}
	}
	cp.CheckRedirect = CheckRedirect
	return &cp
}

// guard refuses, at the transport, an answer that redirects to another
// origin: the client never builds the request to the target, and the
// error it returns (a *url.Error) names the request's own URL, not the
// Location the server chose (which Go's client would quote whole).
type guard struct{ base http.RoundTripper }

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return resp, nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return resp, nil // not followed by the client either
	}
	target, perr := req.URL.Parse(loc)
	if perr != nil {
		resp.Body.Close()
		return nil, &RedirectError{From: Printable(req.URL), To: "(a Location that does not parse)", Reason: "bad Location"}
	}
	if reason := crossOrigin(req.URL, target); reason != "" {
		resp.Body.Close()
		return nil, &RedirectError{From: Printable(req.URL), To: Origin(target), Reason: reason}
	}
	return resp, nil
}

// CheckRedirect is the policy as an http.Client.CheckRedirect: a
// redirect is followed only to the same scheme, host and port as the
// request it answers, and at most MaxRedirects times. (A client from Safe
// refuses a cross-origin redirect at its transport already.)
func CheckRedirect(req *http.Request, via []*http.Request) error {
	prev := via[len(via)-1]
	if reason := crossOrigin(prev.URL, req.URL); reason != "" {
		return &RedirectError{From: Printable(prev.URL), To: Origin(req.URL), Reason: reason}
	}
	if len(via) > MaxRedirects {
		return &RedirectError{From: Printable(prev.URL), To: Origin(req.URL), Reason: fmt.Sprintf("more than %d redirects", MaxRedirects)}
	}
	return nil
}

// crossOrigin says how to leaves from's origin, or "" when it does not.
func crossOrigin(from, to *url.URL) string {
	switch {
	case to.Scheme != from.Scheme:
		return "another scheme"
	case to.Hostname() != from.Hostname() || port(to) != port(from):
		return "another host or port"
	}
	return ""
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch u.Scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Origin returns scheme://host[:port] of u.
func Origin(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host}
	return c.String()
}

// Printable returns u as text fit for an error: scheme, host, port and
// path only.
func Printable(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return c.String()
}

// Refused returns the *RedirectError inside err, when there is one, so a
// caller can report it alone: the *url.Error around it quotes the
// redirect's target whole, query included.
func Refused(err error) (*RedirectError, bool) {
	var re *RedirectError
	if errors.As(err, &re) {
		return re, true
	}
	return nil, false
}
