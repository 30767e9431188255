package checks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rotator/rotator/internal/httpclient"
	"github.com/rotator/rotator/internal/jsonpath"
	"github.com/rotator/rotator/rotation"
)

// What an HTTP check compares.
const (
	MatchFingerprint = "fingerprint"
	MatchVersion     = "version"
)

// HTTP is the client check: every URL must report the new version.
type HTTP struct {
	URLs []string
	// Match is MatchFingerprint (default) or MatchVersion.
	Match string
	// JSONPath is where the value is in a JSON answer (default: Match);
	// Header, when set, names a response header to read instead.
	JSONPath string
	Header   string
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
	// Interval is how often the clients are asked again while one does
	// not report the new version (0: the engine's default).
	Interval time.Duration
	// Client makes the requests (default: internal/httpclient's; a given
	// client gets its redirect policy too: no redirect leaves the origin).
	Client *http.Client
}

var (
	_ rotation.Check  = (*HTTP)(nil)
	_ rotation.Poller = (*HTTP)(nil)
)

// PollInterval implements rotation.Poller.
func (h *HTTP) PollInterval() time.Duration { return h.Interval }

// Name implements rotation.Check.
func (h *HTTP) Name() string {
	return fmt.Sprintf("http %s of %s", h.match(), strings.Join(h.URLs, ", "))
}

func (h *HTTP) match() string {
	if h.Match == "" {
		return MatchFingerprint
	}
	return h.Match
}

// Check implements rotation.Check: it asks every client (one after the
// other) and lists those not on the new version.
func (h *HTTP) Check(ctx context.Context, req rotation.CheckRequest) (rotation.CheckResult, error) {
	want := req.New.Fingerprint
	if h.match() == MatchVersion {
		want = strconv.FormatInt(req.New.Number, 10)
	}
	if want == "" {
		return rotation.CheckResult{}, fmt.Errorf("the new version has no %s to compare", h.match())
	}
	var behind []string
	for _, u := range h.URLs {
		got, err := h.ask(ctx, u)
		switch {
		case err != nil:
			behind = append(behind, fmt.Sprintf("%s: %v", u, err))
		case got != want:
			behind = append(behind, fmt.Sprintf("%s reports %s %s, not %s", u, h.match(), Bounded(got), want))
		}
	}
	if len(behind) > 0 {
		return rotation.CheckResult{Detail: fmt.Sprintf("%d of %d clients not on version %d: %s",
			len(behind), len(h.URLs), req.New.Number, strings.Join(behind, "; "))}, nil
	}
	return rotation.CheckResult{Passed: true}, nil
}

// ask returns what one client reports.
func (h *HTTP) ask(ctx context.Context, u string) (string, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := httpclient.Safe(h.Client).Do(req)
	if err != nil {
		return "", fmt.Errorf("unreachable (%v)", unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if h.Header != "" {
		v := resp.Header.Get(h.Header)
		if v == "" {
			return "", fmt.Errorf("no %s header", h.Header)
		}
		return strings.TrimSpace(v), nil
	}
	path := h.JSONPath
	if path == "" {
		path = h.match()
	}
	doc, err := jsonpath.Decode(body)
	if err != nil {
		return "", fmt.Errorf("answer is not JSON")
	}
	v, err := jsonpath.String(doc, path)
	if err != nil {
		return "", err
	}
	return v, nil
}

// MaxReported bounds how much of what a client reports goes into the
// check's detail (and so into the journal, logs and Slack): a version or
// a fingerprint is short, anything longer is not one.
const MaxReported = 64

// Bounded returns what a client reported, fit for the journal: at most
// MaxReported bytes of valid UTF-8, control characters shown as "?", and
// how much there was when it was cut.
func Bounded(got string) string {
	clean := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return '?'
		}
		return r
	}, got)
	if len(clean) <= MaxReported {
		return clean
	}
	cut := MaxReported
	for cut > 0 && !utf8.RuneStart(clean[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes in all)", clean[:cut], len(got))
}

// unwrapURLError drops the "Get <url>:" that *url.Error puts before the
// cause, since the detail names the URL already.
func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}
