package proof_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/mototest"
)

// awsIAMCrashWorld is the rotator CLI rotating an IAM user's access keys
// on moto (IAM authentication enforced), published to the files store.
type awsIAMCrashWorld struct {
	t     *testing.T
	srv   *mototest.IAMAuth
	admin *iam.Client
	user  string
	dir   string
	env   []string
}

func newAWSIAMCrashWorld(t *testing.T) *awsIAMCrashWorld {
	t.Helper()
	srv := mototest.NewIAMAuth(t)
	w := &awsIAMCrashWorld{t: t, srv: srv, admin: iam.NewFromConfig(srv.AdminConfig()), user: "crash-" + randHex(4), dir: t.TempDir()}
	ctx := context.Background()
	_, err := w.admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(w.user)})
	require.NoError(t, err)
	_, err = w.admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(w.user)})
	require.NoError(t, err)
	policy := fmt.Sprintf(awsIAMLoadPolicy, w.user, srv.URL)
	w.env = clitest.Setup(t, binary, w.dir, newStateDSN(t), policy,
		"ROTATOR_LEASE_TTL=1s", // a killed process's lease frees itself after 1s
		"AWS_ACCESS_KEY_ID="+srv.AdminKeyID, "AWS_SECRET_ACCESS_KEY="+srv.AdminSecret, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	out, code := w.cli(nil, "migrate")
	require.Equal(t, 0, code, out)
	return w
}

func (w *awsIAMCrashWorld) cmd(extra []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Dir = w.dir
	cmd.Env = append(slices.Clone(w.env), extra...)
	return cmd
}

func (w *awsIAMCrashWorld) cli(extra []string, args ...string) (string, int) {
	w.t.Helper()
	var buf bytes.Buffer
	cmd := w.cmd(extra, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return buf.String(), ee.ExitCode()
	}
	require.NoError(w.t, err)
	return buf.String(), 0
}

// resume runs `rotator run` until the killed process's lease has expired
// and the run completes.
func (w *awsIAMCrashWorld) resume(point string) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := w.cli(nil, "run", "--secret", "aws/app")
		if code == 5 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		require.Equal(w.t, 0, code, "%s: the interrupted run resumes and completes:\n%s", point, out)
		require.Contains(w.t, out, "aws/app: rotated", point)
		return
	}
}

// published is the key the files store publishes (zero before the first
// run).
func (w *awsIAMCrashWorld) published() awsKey {
	var k awsKey
	b, err := os.ReadFile(filepath.Join(w.dir, "secrets", "aws/app.json"))
	if errors.Is(err, os.ErrNotExist) {
		return k
	}
	require.NoError(w.t, err)
	require.NoError(w.t, json.Unmarshal(b, &k))
	return k
}

// keys lists the user's keys: id -> status.
func (w *awsIAMCrashWorld) keys() map[string]types.StatusType {
	out, err := w.admin.ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: aws.String(w.user)})
	require.NoError(w.t, err)
	m := map[string]types.StatusType{}
	for _, k := range out.AccessKeyMetadata {
		m[aws.ToString(k.AccessKeyId)] = k.Status
	}
	return m
}

// check: at most two keys on the user; what the store publishes is an
// Active key AWS accepts; when settled, it is the only Active key.
func (w *awsIAMCrashWorld) check(point string, settled bool) {
	w.t.Helper()
	ks := w.keys()
	require.LessOrEqual(w.t, len(ks), 2, "%s: at most two keys on the user: %v", point, ks)
	p := w.published()
	if p.ID == "" {
		require.False(w.t, settled, "%s: a completed run published a key", point)
		return
	}
	require.Equal(w.t, types.StatusTypeActive, ks[p.ID], "%s: the published key %s is Active (keys %v)", point, p.ID, ks)
	_, err := sts.NewFromConfig(mototest.ConfigWithKey(w.srv.URL, p.ID, p.Secret)).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	require.NoError(w.t, err, "%s: AWS accepts the published key", point)
	if settled {
		for id, st := range ks {
			if id != p.ID {
				require.Equal(w.t, types.StatusTypeInactive, st, "%s: no Active key beside the published one (keys %v)", point, ks)
			}
		}
	}
}

// killAt starts `rotator run` with extra env, waits for stop(), and
// kills it with SIGKILL; it reports whether it was still running.
func (w *awsIAMCrashWorld) killAt(extra []string, stop func(r *bufio.Reader, started time.Time)) bool {
	w.t.Helper()
	cmd := w.cmd(extra, "run", "--secret", "aws/app")
	return killRun(w.t, cmd, stop)
}

// TestAWSIAMCrashAnywhere kills `rotator run` of an awsiam secret with
// SIGKILL at every step boundary (before and after each journaled
// action) and at random moments inside steps (ROTATOR_TEST_SLOW), then
// checks that the store still publishes a key AWS accepts and the user
// holds at most two keys, and that the next `rotator run` resumes and
// completes with one working published key and no other Active key.
func TestAWSIAMCrashAnywhere(t *testing.T) {
	t.Parallel()
	random := 8
	if full {
		random = 50
	}
	w := newAWSIAMCrashWorld(t)
	start := time.Now()
	out, code := w.cli([]string{"ROTATOR_TEST_SLOW=20ms"}, "run", "--secret", "aws/app")
	require.Equal(t, 0, code, out)
	span := time.Since(start)
	w.check("clean run", true)

	points := stepBoundaries()
	kills := 0
	for _, p := range points {
		killed := w.killAt([]string{"ROTATOR_TEST_FAULT=" + p}, func(r *bufio.Reader, _ time.Time) {
			for {
				line, err := r.ReadString('\n')
				require.NoError(t, err, "%s: the process ended before reaching the point", p)
				if strings.HasPrefix(line, "ROTATOR_TEST_FAULT pause ") {
					return
				}
			}
		})
		require.True(t, killed, p)
		kills++
		w.check(p, false)
		w.resume(p)
		w.check(p, true)
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 18))
	for i := 0; i < random; {
		at := time.Duration(rnd.Int64N(int64(span)))
		name := fmt.Sprintf("random kill %d at %s", i+1, at.Round(time.Millisecond))
		killed := w.killAt([]string{"ROTATOR_TEST_SLOW=20ms"}, func(r *bufio.Reader, started time.Time) {
			go func() { _, _ = r.WriteTo(discard{}) }()
			time.Sleep(time.Until(started.Add(at)))
		})
		if !killed {
			w.check(name+" (finished before the kill)", true)
			continue
		}
		i++
		kills++
		w.check(name, false)
		w.resume(name)
		w.check(name, true)
	}
	t.Logf("%d SIGKILLs (%d step boundaries, %d random points); every one resumed and completed", kills, len(points), random)
}
