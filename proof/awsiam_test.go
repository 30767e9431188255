package proof_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
)

// How the IAM load test's clients behave (docs/proof.md, "AWS IAM access
// keys").
const (
	awsIAMClients       = 5
	awsIAMClientRefresh = 50 * time.Millisecond // a client re-reads the published file this often
	awsIAMRotations     = 15
)

const awsIAMLoadPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: aws/app
    class: api_key
    rotator:
      awsiam:
        user: %s
        region: us-east-1
        endpoint: %s
    publish:
      - store: local
        path: aws/app.json
    checks:
      - delay: 1s
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// awsKey is what the files store publishes for an awsiam secret.
type awsKey struct {
	User    string `json:"username"`
	ID      string `json:"access_key_id"`
	Secret  string `json:"secret_access_key"`
	Version string `json:"version"`
}

// TestAWSIAMLiveClients: clients that call AWS continuously (moto with
// IAM authentication enforced) with whatever access key the files store
// publishes (re-read every 50ms) are never refused while `rotator run`
// rotates the user's keys again and again from a policies file.
// PROOF_ROTATIONS=N sets another number of rotations.
//
// A call counts as refused when moto refuses it (a deleted or unknown
// key) or when IAM lists the key it was signed with as anything but
// Active right after it: AWS refuses an Inactive key, moto does not
// (internal/mototest.IAMAuth).
func TestAWSIAMLiveClients(t *testing.T) {
	n := awsIAMRotations
	if v, err := strconv.Atoi(os.Getenv("PROOF_ROTATIONS")); err == nil && v > 0 {
		n = v
	}
	srv := mototest.NewIAMAuth(t)
	ctx := context.Background()
	admin := iam.NewFromConfig(srv.AdminConfig())
	user := "pl-" + randHex(4)
	k0 := srv.NewUser(t, user)
	first := awsKey{User: user, ID: aws.ToString(k0.AccessKeyId), Secret: aws.ToString(k0.SecretAccessKey)}

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(fmt.Sprintf(awsIAMLoadPolicy, user, srv.URL)), 0o600))
	bin := loadBinary()
	key, err := exec.Command(bin, "keygen").Output()
	require.NoError(t, err)
	env := append(os.Environ(), "DATABASE_URL="+newStateDSN(t), "ROTATOR_STATE_KEY="+strings.TrimSpace(string(key)),
		"ROTATOR_POLICIES=", "ROTATOR_LOG_FORMAT=json",
		"AWS_ACCESS_KEY_ID="+srv.AdminKeyID, "AWS_SECRET_ACCESS_KEY="+srv.AdminSecret, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	var outputs strings.Builder
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "rotator %v:\n%s", args, out)
		outputs.Write(out)
		return string(out)
	}
	cli("migrate")
	// Until the first run publishes, clients use the key they were given.
	readKey := func() (awsKey, error) {
		var c awsKey
		b, err := os.ReadFile(filepath.Join(dir, "secrets", "aws/app.json"))
		if errors.Is(err, os.ErrNotExist) {
			return first, nil
		}
		if err != nil {
			return c, err
		}
		return c, json.Unmarshal(b, &c)
	}
	status := func(ctx context.Context, id string) (types.StatusType, int, error) {
		out, err := admin.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(user)})
		if err != nil {
			return "", 0, err
		}
		for _, k := range out.AccessKeyMetadata {
			if aws.ToString(k.AccessKeyId) == id {
				return k.Status, len(out.AccessKeyMetadata), nil
			}
		}
		return "", len(out.AccessKeyMetadata), nil
	}

	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var calls, failures, maxKeys atomic.Int64
	var mu sync.Mutex
	var firstErrors []string
	fail := func(s string) {
		failures.Add(1)
		mu.Lock()
		if len(firstErrors) < 5 {
			firstErrors = append(firstErrors, s)
		}
		mu.Unlock()
	}
	for i := 0; i < awsIAMClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c awsKey
			var read time.Time
			for cctx.Err() == nil {
				if time.Since(read) >= awsIAMClientRefresh {
					nc, err := readKey()
					if err != nil {
						fail("read: " + err.Error())
						continue
					}
					c, read = nc, time.Now()
				}
				callCtx, cancel := context.WithTimeout(cctx, 10*time.Second)
				_, err := sts.NewFromConfig(mototest.ConfigWithKey(srv.URL, c.ID, c.Secret)).GetCallerIdentity(callCtx, &sts.GetCallerIdentityInput{})
				var st types.StatusType
				var nkeys int
				if err == nil {
					st, nkeys, err = status(callCtx, c.ID)
				}
				cancel()
				if cctx.Err() != nil {
					return
				}
				calls.Add(1)
				for m := maxKeys.Load(); int64(nkeys) > m && !maxKeys.CompareAndSwap(m, int64(nkeys)); m = maxKeys.Load() {
				}
				switch {
				case err != nil:
					fail(c.ID + ": " + err.Error())
				case st != types.StatusTypeActive:
					fail(c.ID + " is " + string(st) + " right after the call")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		require.Contains(t, cli("run", "--secret", "aws/app"), "aws/app: rotated", "rotation %d", i+1)
	}
	took := time.Since(start)
	time.Sleep(2 * awsIAMClientRefresh)
	stop()
	wg.Wait()
	final, err := readKey()
	require.NoError(t, err)
	t.Logf("aws iam access keys: %d rotations in %s (%s each), %d client calls, %d refused %q, at most %d keys on the user",
		n, took.Round(time.Millisecond), (took / time.Duration(n)).Round(time.Millisecond), calls.Load(), failures.Load(), firstErrors, maxKeys.Load())
	require.Zero(t, failures.Load(), "no client may be refused with the published key: %q", firstErrors)
	require.Greater(t, calls.Load(), int64(n*awsIAMClients), "the clients kept calling")
	require.LessOrEqual(t, maxKeys.Load(), int64(2))
	require.Equal(t, strconv.Itoa(n), final.Version, "every run published a new version")
	st, nkeys, err := status(ctx, final.ID)
	require.NoError(t, err)
	require.Equal(t, types.StatusTypeActive, st)
	require.Equal(t, 2, nkeys, "the published key and the Inactive one it replaced")
	// The clients' test can fail: the key the first run replaced is gone
	// and AWS refuses it.
	_, err = sts.NewFromConfig(mototest.ConfigWithKey(srv.URL, first.ID, first.Secret)).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	require.Error(t, err, "the first key was deleted by the second run")
	require.NotContains(t, outputs.String(), final.Secret, "a secret access key in the CLI's output")
	require.NotContains(t, outputs.String(), srv.AdminSecret, "rotator's own secret in the CLI's output")
}
