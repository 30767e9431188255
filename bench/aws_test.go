package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/awssm"
)

// awsRotation is the rotation AWS documents for its own Secrets Manager
// rotation functions for PostgreSQL, "alternating users" (multi-user),
// written here in Go from that description and driven step by step as
// Secrets Manager drives a rotation function: four invocations,
// createSecret, setSecret, testSecret, finishSecret, each with its own
// reads of the secret and its own database connections. It is not AWS's
// code (that is AWS's to publish), and it runs without Lambda's or
// Python's overhead, which favours it.
//
// The secret holds {username, password}; the two users are the pair's
// _blue and _green roles (AWS's function adds and removes a "_clone"
// suffix), both with LOGIN: AWS's scheme never disables the user it
// replaces, which keeps working until the rotation after next.
type awsRotation struct {
	w      *world
	client *secretsmanager.Client
}

type awsSecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (a *awsRotation) name(i int) string { return fmt.Sprintf("awsrot/%04d", i) }

// setup creates each pair's secret, current on _blue, and gives _green
// LOGIN (both users of the scheme can log in).
func (a *awsRotation) setup(tb testing.TB, n int) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a.w.targetDSN)
	require.NoError(tb, err)
	defer conn.Close(ctx)
	for i := range n {
		g := a.w.group("a", i)
		_, err := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{g + "_green"}.Sanitize()+" LOGIN PASSWORD 'bench-initial'")
		require.NoError(tb, err)
		b, _ := json.Marshal(awsSecret{Username: g + "_blue", Password: "bench-initial"})
		_, err = a.client.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(a.name(i)), SecretString: aws.String(string(b))})
		require.NoError(tb, err)
	}
}

func (a *awsRotation) value(ctx context.Context, i int, stage, version string) (awsSecret, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(a.name(i)), VersionStage: aws.String(stage)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	out, err := a.client.GetSecretValue(ctx, in)
	if err != nil {
		return awsSecret{}, err
	}
	var s awsSecret
	err = json.Unmarshal([]byte(aws.ToString(out.SecretString)), &s)
	return s, err
}

func (a *awsRotation) login(ctx context.Context, s awsSecret) error {
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(a.w.targetDSN, s.Username, s.Password))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT now()")
	return err
}

// rotate runs the four steps for secret i with a fresh token.
func (a *awsRotation) rotate(i int) error {
	ctx := context.Background()
	token := uuid.NewString()
	// createSecret: the current secret; a pending version of this token
	// already there ends the step; otherwise the other user with a new
	// random password, stored as AWSPENDING.
	cur, err := a.value(ctx, i, "AWSCURRENT", "")
	if err != nil {
		return fmt.Errorf("createSecret: %w", err)
	}
	if _, err := a.value(ctx, i, "AWSPENDING", token); err == nil {
		return errors.New("createSecret: a pending version of a fresh token")
	} else if !isNotFound(err) {
		return fmt.Errorf("createSecret: %w", err)
	}
	g := a.w.group("a", i)
	next := awsSecret{Username: g + "_green"}
	if cur.Username == next.Username {
		next.Username = g + "_blue"
	}
	pw, err := a.client.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{ExcludePunctuation: aws.Bool(true), PasswordLength: aws.Int64(32)})
	if err != nil {
		return fmt.Errorf("createSecret: %w", err)
	}
	next.Password = aws.ToString(pw.RandomPassword)
	b, _ := json.Marshal(next)
	if _, err := a.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(a.name(i)),
		ClientRequestToken: aws.String(token), SecretString: aws.String(string(b)), VersionStages: []string{"AWSPENDING"}}); err != nil {
		return fmt.Errorf("createSecret: %w", err)
	}
	// setSecret: the pending secret; if it logs in already, done;
	// otherwise the master user sets the pending user's password.
	pending, err := a.value(ctx, i, "AWSPENDING", token)
	if err != nil {
		return fmt.Errorf("setSecret: %w", err)
	}
	if a.login(ctx, pending) != nil {
		master, err := pgx.Connect(ctx, a.w.targetDSN)
		if err != nil {
			return fmt.Errorf("setSecret: %w", err)
		}
		var exists bool
		err = master.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", pending.Username).Scan(&exists)
		if err == nil && exists {
			_, err = master.Exec(ctx, "ALTER USER "+pgx.Identifier{pending.Username}.Sanitize()+" WITH PASSWORD "+quoteLiteral(pending.Password))
		}
		_ = master.Close(ctx)
		if err != nil || !exists {
			return fmt.Errorf("setSecret: %v (user exists: %v)", err, exists)
		}
	}
	// testSecret: log in with the pending secret.
	pending, err = a.value(ctx, i, "AWSPENDING", token)
	if err != nil {
		return fmt.Errorf("testSecret: %w", err)
	}
	if err := a.login(ctx, pending); err != nil {
		return fmt.Errorf("testSecret: %w", err)
	}
	// finishSecret: move AWSCURRENT to the token's version.
	d, err := a.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(a.name(i))})
	if err != nil {
		return fmt.Errorf("finishSecret: %w", err)
	}
	current := ""
	for v, stages := range d.VersionIdsToStages {
		for _, s := range stages {
			if s == "AWSCURRENT" {
				current = v
			}
		}
	}
	if current == token {
		return nil
	}
	if _, err := a.client.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String(a.name(i)),
		VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(token), RemoveFromVersionId: aws.String(current)}); err != nil {
		return fmt.Errorf("finishSecret: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf *smtypes.ResourceNotFoundException
	return errors.As(err, &nf)
}

// quoteLiteral quotes s as an SQL string literal (AWS's function sends
// the plaintext password in ALTER USER; the server hashes it).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// newAWSSides makes n pairs for each side on one cluster and one
// moto_server (its calls through transport, when not nil): rotator's
// engine publishing to the awssm store, and awsRotation with its secrets.
func newAWSSides(tb testing.TB, n int, transport http.RoundTripper) (*engineSide, *awsRotation, *awssm.Store) {
	tb.Helper()
	w := newWorld(tb, n, "e", "a")
	cfg := mototest.New(tb).AWSConfig()
	if transport != nil {
		cfg.HTTPClient = &http.Client{Transport: transport}
	}
	store, err := awssm.New(context.Background(), awssm.Config{Spec: &policy.AWSSMSpec{Region: "us-east-1"}, AWS: &cfg})
	require.NoError(tb, err)
	es := newEngineSide(tb, w, w.stateDSN, w.targetDSN)
	es.publish = func(id string) rotation.Publication {
		return rotation.Publication{StoreName: "aws", Path: id, Store: store}
	}
	as := &awsRotation{w: w, client: secretsmanager.NewFromConfig(cfg)}
	as.setup(tb, n)
	return es, as, store
}

// BenchmarkAgainstAWSRotation: rotator's engine publishing to AWS Secrets
// Manager (blue/green, with every observe-and-fence read, the old user
// retired) against awsRotation (the multi-user scheme AWS documents for its
// rotation functions, the old user left able to log in), on one Postgres
// cluster and one moto_server, b.N secrets each, one at a time and then 4
// in flight; each secret is rotated once untimed first. Reported: each
// side's rotations per second, and rotator's over AWS's (the lead).
//
//	go test ./bench -run '^$' -bench AgainstAWSRotation -benchtime 200x -count 1
func BenchmarkAgainstAWSRotation(b *testing.B) {
	n := b.N
	es, as, _ := newAWSSides(b, n, nil)
	for _, fn := range []func(int) error{es.rotate, as.rotate} {
		_, err := boundedN(0, n, 1, fn)
		require.NoError(b, err)
	}
	b.ResetTimer()
	for _, inFlight := range []int{1, 4} {
		var er, ar result
		half := n / 2
		// Interleaved: rotator, AWS, AWS, rotator.
		for _, c := range []struct {
			side     *result
			fn       func(int) error
			from, to int
		}{{&er, es.rotate, 0, half}, {&ar, as.rotate, 0, half}, {&ar, as.rotate, half, n}, {&er, es.rotate, half, n}} {
			r, err := boundedN(c.from, c.to, inFlight, c.fn)
			require.NoError(b, err)
			c.side.lat = append(c.side.lat, r.lat...)
			c.side.wall += r.wall
		}
		b.ReportMetric(er.perSecond(), fmt.Sprintf("rotator-%d-rot/s", inFlight))
		b.ReportMetric(ar.perSecond(), fmt.Sprintf("aws-%d-rot/s", inFlight))
		b.ReportMetric(er.perSecond()/ar.perSecond(), fmt.Sprintf("lead-%d-x", inFlight))
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
}

// rotatorAWSCalls bounds the Secrets Manager calls of one steady-state
// rotation through the awssm store (TestAWSRotation): 4 DescribeSecret
// (before generate, at stage, at publish, before retire), 2
// GetSecretValue (publish compares the staged version with the run's
// data; the describe before retire reads the new version's metadata), 1
// PutSecretValue, 2 UpdateSecretVersionStage. It was 11 before the store
// remembered the metadata of the versions it had read (2 more
// GetSecretValue).
const rotatorAWSCalls = 9

// TestAWSRotation keeps BenchmarkAgainstAWSRotation's two sides working
// (the default test run does not run benchmarks): each side rotates a few
// secrets twice. AWS's scheme leaves the user it replaced able to log in;
// rotator's retires it.
func TestAWSRotation(t *testing.T) {
	const n = 3
	ctx := context.Background()
	calls := mototest.NewCutAnswers() // cuts nothing: counts the calls
	es, as, store := newAWSSides(t, n, calls)
	ops := []string{"DescribeSecret", "GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "CreateSecret", "GetRandomPassword"}
	count := func() (total int) {
		for _, op := range ops {
			total += calls.Sent(op)
		}
		return total
	}
	for i := range n {
		var published []awsSecret
		for k := range 2 {
			before := count()
			require.NoError(t, es.rotate(i))
			if k == 1 {
				// A steady-state rotation (rotatorAWSCalls).
				t.Logf("rotator: %d Secrets Manager calls", count()-before)
				require.LessOrEqual(t, count()-before, rotatorAWSCalls, "Secrets Manager calls of one steady-state rotation")
			}
			v, err := store.Read(ctx, rotation.ReadRequest{Path: fmt.Sprintf("bench/%04d", i), Which: rotation.Current})
			require.NoError(t, err)
			published = append(published, awsSecret{Username: v.Credential.Username, Password: v.Credential.Secret.Reveal()})
		}
		require.NoError(t, as.login(ctx, published[1]), "rotator: the published credential logs in")
		require.Error(t, as.login(ctx, published[0]), "rotator: the one it replaced is retired")

		published = published[:0]
		for k := range 2 {
			before := count()
			require.NoError(t, as.rotate(i))
			if k == 1 {
				t.Logf("AWS's scheme: %d Secrets Manager calls", count()-before)
			}
			s, err := as.value(ctx, i, "AWSCURRENT", "")
			require.NoError(t, err)
			published = append(published, s)
		}
		require.NotEqual(t, published[0].Username, published[1].Username, "AWS's scheme alternates users")
		require.NoError(t, as.login(ctx, published[1]), "AWS: the published credential logs in")
		require.NoError(t, as.login(ctx, published[0]), "AWS: the one it replaced still logs in")
	}
}
