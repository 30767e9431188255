package awsiam_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/awsiam"
)

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
	cut := mototest.NewCutAnswers()
	cut.Cut("CreateAccessKey", 1, 0)
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
	require.Equal(t, 1, cut.Sent("CreateAccessKey"), "CreateAccessKey was sent once")
	require.Len(t, keys(t, user), 2, "the current key and the one the cut call created")

	g, err := r.Generate(ctx, req)
	require.NoError(t, err)
	require.Len(t, keys(t, user), 2, "the cut call's key was deleted")
	require.NoError(t, login(t, cur))
	require.NoError(t, login(t, g.Credential))
}
