package awsiam_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/awsiam"
)

// cutCreate cuts the answer of the first CreateAccessKey it forwards as
// Go's HTTP client does when it closes a kept-alive connection under a
// response (aws/aws-sdk-go-v2#1825): IAM created the key, rotator never
// reads it. It counts the CreateAccessKey calls sent.
type cutCreate struct {
	sent, cut atomic.Int32
}

func (c *cutCreate) RoundTrip(r *http.Request) (*http.Response, error) {
	create := false
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		create = bytes.Contains(b, []byte("Action=CreateAccessKey"))
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if create {
		c.sent.Add(1)
		if err == nil && c.cut.Add(-1) >= 0 {
			_ = resp.Body.Close()
			resp.Body = io.NopCloser(iotest.ErrReader(&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}))
		}
	}
	return resp, err
}

// A CreateAccessKey whose answer was cut is not sent again by the SDK,
// whatever its retryer (the production default retries a closed
// connection): a second call would create a second key (or meet IAM's
// two-key limit and fail for good as "created outside rotator"). The try
// fails, transient, and the run's next try deletes the key the cut call
// made (a stray of its intent) and creates one it can read.
func TestCutCreateAccessKeyIsNotSentAgain(t *testing.T) {
	ctx := context.Background()
	user, ks := newUser(t, 1)
	cur := ks[0]
	cut := &cutCreate{}
	cut.cut.Store(1)
	r := newRotator(t, user, func(c *awsiam.Config) {
		ac := c.AWS.Copy()
		ac.Retryer = nil // the SDK's default, as in production
		ac.HTTPClient = &http.Client{Transport: cut}
		c.AWS = &ac
	})
	req := rotation.GenerateRequest{SecretID: "aws/app", RunID: "run-7", Current: cur.Meta()}
	_, err := r.Generate(ctx, req)
	require.Error(t, err, "the answer was cut")
	require.False(t, rotation.IsPermanent(err), "a cut answer is worth another try of the run: %v", err)
	require.EqualValues(t, 1, cut.sent.Load(), "CreateAccessKey was sent once")
	require.Len(t, keys(t, user), 2, "the current key and the one the cut call created")

	g, err := r.Generate(ctx, req)
	require.NoError(t, err)
	require.Len(t, keys(t, user), 2, "the cut call's key was deleted")
	require.NoError(t, login(t, cur))
	require.NoError(t, login(t, g.Credential))
}
