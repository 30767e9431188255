package mototest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing/iotest"
)

// CutAnswers is an http.RoundTripper that sends every request on and cuts
// the answers of the calls it is told to: the response arrives (the call
// reached AWS, or moto, and did what it does) and its body then fails as
// Go's HTTP client fails when it closes a kept-alive connection under a
// response it is still reading (a 200 whose body ends in "use of closed
// network connection", aws/aws-sdk-go-v2#1825). What the SDK does next is
// its retryer's business: the SDK's default sends the call again.
//
// Calls are named by their operation: the JSON protocol's X-Amz-Target
// after its dot (Secrets Manager: "UpdateSecretVersionStage"), or the
// query protocol's Action (IAM: "CreateAccessKey").
type CutAnswers struct {
	base http.RoundTripper
	mu   sync.Mutex
	cut  map[string]int // operation -> answers still to cut
	skip map[string]int // operation -> answers to let through first
	sent map[string]int // operation -> requests sent
}

// NewCutAnswers returns a CutAnswers over http.DefaultTransport that cuts
// nothing until told to.
func NewCutAnswers() *CutAnswers {
	return &CutAnswers{base: http.DefaultTransport, cut: map[string]int{}, skip: map[string]int{}, sent: map[string]int{}}
}

// Cut makes the answers of the next n calls of op be cut, after skip
// answers of op that are let through.
func (c *CutAnswers) Cut(op string, n, skip int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[op], c.skip[op] = n, skip
}

// Armed is the number of answers of op still to be cut.
func (c *CutAnswers) Armed(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[op]
}

// Sent is the number of requests of op sent so far.
func (c *CutAnswers) Sent(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[op]
}

// RoundTrip sends r and cuts its answer when told to.
func (c *CutAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	op, err := operation(r)
	if err != nil {
		return nil, err
	}
	resp, err := c.base.RoundTrip(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[op]++
	switch {
	case err != nil || c.cut[op] == 0:
	case c.skip[op] > 0:
		c.skip[op]--
	default:
		c.cut[op]--
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(iotest.ErrReader(&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}))
	}
	return resp, err
}

// operation names r's call (reading a form body leaves it readable).
func operation(r *http.Request) (string, error) {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		return t[strings.LastIndexByte(t, '.')+1:], nil
	}
	if r.Body == nil {
		return "", nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return "", nil
	}
	return v.Get("Action"), nil
}
