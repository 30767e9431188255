package awscreds_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/awscreds"
)

// TestProcessOutputWithheld runs a real credential process whose output
// the SDK cannot parse: the SDK's own error quotes the key; the wrapped
// provider's does not. A process that fails otherwise keeps its error.
func TestProcessOutputWithheld(t *testing.T) {
	const key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	dir := t.TempDir()
	out, err := json.Marshal(map[string]any{"Version": 1, "AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": key, "Expiration": "in an hour"})
	require.NoError(t, err)
	bad := filepath.Join(dir, "bad.sh")
	require.NoError(t, os.WriteFile(bad, []byte("#!/bin/sh\necho '"+string(out)+"'\n"), 0o700))
	failing := filepath.Join(dir, "failing.sh")
	require.NoError(t, os.WriteFile(failing, []byte("#!/bin/sh\necho 'no such profile' >&2\nexit 3\n"), 0o700))

	_, err = processcreds.NewProvider(bad).Retrieve(t.Context())
	require.ErrorContains(t, err, key, "the SDK quotes the output (else this test shows nothing)")

	_, err = awscreds.Wrap(processcreds.NewProvider(bad)).Retrieve(t.Context())
	require.ErrorIs(t, err, awscreds.ErrProcessOutput)
	require.NotContains(t, err.Error(), key)

	_, err = awscreds.Wrap(processcreds.NewProvider(failing)).Retrieve(t.Context())
	require.Error(t, err)
	require.NotErrorIs(t, err, awscreds.ErrProcessOutput)
	require.Contains(t, err.Error(), "credential_process", "another failure keeps the SDK's error")
}
