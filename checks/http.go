package checks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

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
	// Client makes the requests (default http.DefaultClient).
	Client *http.Client
}

var _ rotation.Check = (*HTTP)(nil)

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
			behind = append(behind, fmt.Sprintf("%s reports %s %s, not %s", u, h.match(), got, want))
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
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
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

// unwrapURLError drops the "Get <url>:" that *url.Error puts before the
// cause, since the detail names the URL already.
func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}
