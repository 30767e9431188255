package mototest_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
)

func TestServerAnswersResetsAndCloses(t *testing.T) {
	t.Parallel()
	s, err := mototest.Start()
	require.NoError(t, err)
	defer s.Close()

	client := secretsmanager.NewFromConfig(s.AWSConfig())
	_, err = client.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String("mototest/a")})
	require.NoError(t, err)
	out, err := client.ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{})
	require.NoError(t, err)
	require.Len(t, out.SecretList, 1)

	require.NoError(t, s.Reset(t.Context()))
	out, err = client.ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{})
	require.NoError(t, err)
	require.Empty(t, out.SecretList, "Reset drops everything")

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice")
	requireGone(t, s)
}

func TestNewKillsAtCleanup(t *testing.T) {
	t.Parallel()
	var s *mototest.Server
	t.Run("inner", func(t *testing.T) { s = mototest.New(t) })
	requireGone(t, s)
}

// Not parallel: it changes PATH.
func TestMissingBinaryFailsWithInstallHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := mototest.Start()
	require.Error(t, err)
	require.Contains(t, err.Error(), "pip install 'moto[server]'")
}

func requireGone(t *testing.T, s *mototest.Server) {
	t.Helper()
	require.Eventually(t, func() bool {
		return errors.Is(syscall.Kill(s.Pid(), 0), syscall.ESRCH)
	}, 5*time.Second, 50*time.Millisecond, "moto_server pid %d still runs", s.Pid())
	client := secretsmanager.NewFromConfig(s.AWSConfig())
	_, err := client.ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{})
	require.Error(t, err, "the port no longer answers")
}

// TestConfigRetriesOnlyACutAnswer: the tests' configuration sends a call
// again when its answer was cut by a locally closed connection, and sends
// any other failure once (a test's injected fault costs one attempt).
func TestConfigRetriesOnlyACutAnswer(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	fail := atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if fail.Load() {
			w.Header().Set("X-Amzn-Errortype", "InternalServiceError")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"__type":"InternalServiceError","Message":"injected"}`)
			return
		}
		_, _ = io.WriteString(w, `{"Name":"x"}`)
	}))
	t.Cleanup(srv.Close)
	cut := mototest.NewCutAnswers()
	cfg := mototest.Config(srv.URL)
	cfg.HTTPClient = &http.Client{Transport: cut}
	client := secretsmanager.NewFromConfig(cfg)

	cut.Cut("DescribeSecret", 1, 0)
	out, err := client.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String("x")})
	require.NoError(t, err, "a cut answer is asked for again")
	require.Equal(t, "x", aws.ToString(out.Name))
	require.EqualValues(t, 2, calls.Load())

	require.Zero(t, cut.Armed("DescribeSecret"))
	fail.Store(true)
	_, err = client.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String("x")})
	require.Error(t, err)
	require.EqualValues(t, 3, calls.Load(), "an error answer is not retried")
}
