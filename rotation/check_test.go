package rotation_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

// checkEnv is env with a second files store and the check's metrics and
// events captured.
type checkEnv struct {
	*env
	second  *files.Store
	dir     string // the second store's directory
	reg     *prometheus.Registry
	metrics *rotation.Metrics
	mu      sync.Mutex
	events  []notify.Event
}

func newCheckEnv(t *testing.T) *checkEnv {
	t.Helper()
	c := &checkEnv{env: newEnv(t), reg: prometheus.NewRegistry()}
	var err error
	c.dir = t.TempDir()
	c.second, err = files.New(&policy.FilesSpec{Dir: c.dir}, "")
	require.NoError(t, err)
	c.target.Publish = append(c.target.Publish, rotation.Publication{StoreName: "mirror", Path: "app/db.json", Store: c.second})
	c.metrics = rotation.NewMetrics(c.reg)
	c.engine.Metrics = c.metrics
	c.engine.Events = func(ev notify.Event) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.events = append(c.events, ev)
	}
	return c
}

// emitted returns the credential_broken events so far.
func (c *checkEnv) emitted() []notify.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []notify.Event
	for _, ev := range c.events {
		if ev.Kind == rotation.EventCredentialBroken {
			out = append(out, ev)
		}
	}
	return out
}

func (c *checkEnv) ok(store string) float64 {
	return gaugeValue(c.metrics.PublishedOK.WithLabelValues("db/postgres", store))
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

func statuses(rep rotation.CheckReport) map[string]string {
	m := map[string]string{}
	for _, s := range rep.Stores {
		m[s.Store] = s.Status
	}
	return m
}

// dump is the state database's data, to show the check changed nothing.
func (c *checkEnv) dump() string {
	c.t.Helper()
	out, err := exec.Command("pg_dump", "--data-only", c.stateDSN).CombinedOutput()
	require.NoError(c.t, err, string(out))
	// pg_dump guards its output with a random \restrict key per dump.
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "\\restrict ") && !strings.HasPrefix(l, "\\unrestrict ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// A healthy secret checks ok in every store, with no lease and no write:
// the check runs while another process holds the secret's lease, and the
// state database is byte for byte the same afterwards.
func TestCheckHealthyIsReadOnly(t *testing.T) {
	t.Parallel()
	c := newCheckEnv(t)
	ck := &rotation.Checker{Engine: c.engine}

	rep, err := ck.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"local": rotation.CheckUnpublished, "mirror": rotation.CheckUnpublished}, statuses(rep))
	require.False(t, rep.Broken())

	res := c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := c.published()

	lease, err := c.db.AcquireLease(c.ctx, "db/postgres", "someone-else", time.Minute)
	require.NoError(t, err)
	defer func() { _ = c.db.ReleaseLease(c.ctx, lease) }()
	before := c.dump()
	rep, err = ck.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Equal(t, before, c.dump(), "the check writes nothing to the state database")

	require.Equal(t, map[string]string{"local": rotation.CheckOK, "mirror": rotation.CheckOK}, statuses(rep))
	require.False(t, rep.Broken())
	require.True(t, rep.Agree())
	for _, s := range rep.Stores {
		require.Equal(t, v1.Meta(), *s.Current, s.Publication())
		require.True(t, s.Works)
	}
	require.Equal(t, 1.0, c.ok("local"))
	require.Equal(t, 1.0, c.ok("mirror"))
	require.Equal(t, 1.0, gaugeValue(c.metrics.StoresAgree.WithLabelValues("db/postgres")))
	require.Empty(t, c.emitted())
}

// A published password that no longer logs in (changed behind rotator's
// back) is broken in every store that publishes it; one credential_broken
// event names the stores and the command to run, a second check does not
// repeat it, and once a rotation publishes a working credential the
// gauge is back at 1.
func TestCheckBrokenCredential(t *testing.T) {
	t.Parallel()
	c := newCheckEnv(t)
	ck := &rotation.Checker{Engine: c.engine}
	res := c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := c.published()

	c.exec(`ALTER ROLE ` + v1.Credential.Username + ` PASSWORD 'changed-behind-rotators-back'`)
	rep, err := ck.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"local": rotation.CheckBroken, "mirror": rotation.CheckBroken}, statuses(rep))
	require.True(t, rep.Broken())
	for _, s := range rep.Stores {
		require.Contains(t, s.Reason, "password authentication failed", s.Publication())
		require.False(t, s.Works)
	}
	require.Equal(t, 0.0, c.ok("local"))
	require.Equal(t, 0.0, c.ok("mirror"))

	evs := c.emitted()
	require.Len(t, evs, 1, "one event for the one broken credential, however many stores publish it")
	ev := evs[0]
	require.Equal(t, rotation.EventCredentialBroken, ev.Kind)
	require.Equal(t, "db/postgres", ev.SecretID)
	require.Equal(t, v1.RunID, ev.RunID)
	require.Contains(t, ev.Detail, "local:db/postgres.json, mirror:app/db.json publish version 1 ("+v1.Credential.Username+")")
	require.Equal(t, "rotator check --secret db/postgres", ev.Commands[0])

	_, err = ck.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Len(t, c.emitted(), 1, "the same broken credential is reported once")

	// A fresh, tested credential repairs it.
	res = c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	rep, err = ck.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.False(t, rep.Broken(), "%+v", rep)
	require.Equal(t, 1.0, c.ok("local"))

	out, err := json.Marshal(rep)
	require.NoError(t, err)
	c.noPlaintext(string(out), ev.Detail, ev.Error)
}

// Two stores that publish different versions disagree, and say how; a
// credential that works is still reported as working.
func TestCheckStoresDisagree(t *testing.T) {
	t.Parallel()
	c := newCheckEnv(t)
	res := c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := c.published()

	// Someone publishes the same credential to the mirror under another
	// version and run id.
	hand := rotation.Version{Number: 7, RunID: "by-hand", RotatedAt: time.Now(), Credential: v1.Credential}
	require.NoError(t, c.second.Publish(c.ctx, rotation.PublishRequest{Path: "app/db.json", Version: hand}))

	rep, err := c.engine.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"local": rotation.CheckDisagrees, "mirror": rotation.CheckDisagrees}, statuses(rep))
	require.True(t, rep.Broken())
	require.False(t, rep.Agree())
	local := rep.Stores[0]
	require.True(t, local.Works)
	require.Len(t, local.Differs, 1)
	require.Contains(t, local.Differs[0], "mirror:app/db.json: version 7 (here 1), run by-hand (here "+v1.RunID+")")
	require.NotContains(t, local.Differs[0], "fingerprint", "the secret is the same")
	require.Equal(t, 1.0, c.ok("local"), "the credential works")
	require.Equal(t, 0.0, gaugeValue(c.metrics.StoresAgree.WithLabelValues("db/postgres")))
	require.Empty(t, c.emitted(), "disagreement is not a broken credential")
}

// A store that is unreachable, and a target that does not answer, are
// reported as such within the check's deadline; neither says "broken".
func TestCheckUnreachable(t *testing.T) {
	t.Parallel()
	c := newCheckEnv(t)
	res := c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)

	c.target.Publish[1].Store = &downStore{Store: c.second}
	rep, err := c.engine.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"local": rotation.CheckOK, "mirror": rotation.CheckUnreachable}, statuses(rep))
	require.Contains(t, rep.Stores[1].Reason, "connection refused")
	require.False(t, rep.Broken())
	require.True(t, rep.Unreachable())
	require.Equal(t, 0.0, c.ok("mirror"))

	c.target.Publish = c.target.Publish[:1]
	c.target.Rotator = hangTest{c.rotator}
	ck := &rotation.Checker{Engine: c.engine, Timeout: 50 * time.Millisecond}
	start := time.Now()
	rep, err = ck.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, rotation.CheckUnreachable, rep.Stores[0].Status)
	require.Contains(t, rep.Stores[0].Reason, "no answer within 50ms")
	require.Empty(t, c.emitted())
}

// downStore is a store whose every call fails as an unreachable one does.
type downStore struct{ rotation.Store }

func (downStore) Describe(context.Context, rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	return rotation.DescribeResponse{}, &netErr{"dial tcp 127.0.0.1:1: connect: connection refused"}
}

type netErr struct{ s string }

func (e *netErr) Error() string   { return e.s }
func (e *netErr) Timeout() bool   { return false }
func (e *netErr) Temporary() bool { return false }

// hangTest is a rotator whose Test never answers (until its context ends).
type hangTest struct{ rotation.Rotator }

func (hangTest) Test(ctx context.Context, _ rotation.TestRequest) error {
	<-ctx.Done()
	return ctx.Err()
}

// A value edited by hand in one store is tested (it does not log in) and
// differs from the other store's by its fingerprint.
func TestCheckValueEditedByHand(t *testing.T) {
	t.Parallel()
	c := newCheckEnv(t)
	res := c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	v1 := c.published()
	name := filepath.Join(c.dir, "app", "db.json")
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	require.Contains(t, string(b), v1.Credential.Secret.Reveal())
	const edited = "hand-edited-password-5678"
	require.NoError(t, os.WriteFile(name, []byte(strings.Replace(string(b), v1.Credential.Secret.Reveal(), edited, 1)), 0o600))
	c.seen = append(c.seen, edited)

	rep, err := c.engine.Check(c.ctx, c.target)
	require.NoError(t, err)
	require.Equal(t, rotation.CheckDisagrees, rep.Stores[0].Status, "%+v", rep.Stores[0])
	require.Equal(t, rotation.CheckBroken, rep.Stores[1].Status, "%+v", rep.Stores[1])
	require.Contains(t, strings.Join(rep.Stores[1].Differs, "\n"), "fingerprint "+v1.Meta().Fingerprint)
	out, err := json.Marshal(rep)
	require.NoError(t, err)
	c.noPlaintext(string(out), c.logs.String())
}

// While a run is between its publishes, the stores differ by design: the
// check says so and does not report a disagreement.
func TestCheckDuringPublish(t *testing.T) {
	t.Parallel()
	c := newCheckEnv(t)
	res := c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)

	var during rotation.CheckReport
	var checked bool
	c.engine.Hooks.After = func(_ string, step state.Step) error {
		if step != state.StepPublish || checked {
			return nil
		}
		checked = true // the first store took version 2, the second not yet
		var err error
		during, err = c.engine.Check(c.ctx, c.target)
		return err
	}
	res = c.run(rotation.Options{Wait: true})
	require.Equal(t, state.RunSucceeded, res.Status, "%+v", res)
	require.True(t, checked)
	require.Equal(t, map[string]string{"local": rotation.CheckOK, "mirror": rotation.CheckOK}, statuses(during))
	require.NotEmpty(t, during.Stores[0].Differs, "the difference is still shown")
	require.Contains(t, during.Note, "is publishing version 2")
	require.False(t, during.Broken())
}

// The summary a daemon keeps for its status page has what the page shows,
// and says broken exactly when the report does.
func TestCheckSummary(t *testing.T) {
	at := time.Date(2026, 12, 1, 6, 0, 0, 123, time.UTC)
	rep := rotation.CheckReport{SecretID: "db/app", Class: "database", CheckedAt: at, Stores: []rotation.StoreCheck{
		{Store: "vault", Path: "kv/app", Status: rotation.CheckOK, Works: true,
			Current: &rotation.VersionMeta{Number: 7, RunID: "r7", Fingerprint: "fp", Username: "app_blue"}},
		{Store: "files", Path: "app.json", Status: rotation.CheckUnreachable, Reason: "describe: timeout",
			Differs: []string{"publishes no version"}},
	}}
	s := rep.Summary()
	require.True(t, s.Time().Equal(at), "%v", s.Time())
	require.Equal(t, []rotation.StoreSummary{
		{Store: "vault", Path: "kv/app", Status: rotation.CheckOK, Version: 7},
		{Store: "files", Path: "app.json", Status: rotation.CheckUnreachable,
			Note: &rotation.StoreNote{Reason: "describe: timeout", Differs: []string{"publishes no version"}}},
	}, s.Stores)
	require.Equal(t, "", s.Stores[0].Reason())
	require.Nil(t, s.Stores[0].Differs())
	require.Equal(t, "describe: timeout", s.Stores[1].Reason())
	require.Equal(t, []string{"publishes no version"}, s.Stores[1].Differs())
	require.EqualValues(t, 64, unsafe.Sizeof(s.Stores[0]), "a summary kept for each secret stays small")
	require.Equal(t, "vault:kv/app", s.Stores[0].Publication())
	for _, st := range []string{rotation.CheckOK, rotation.CheckBroken, rotation.CheckDisagrees, rotation.CheckUnreachable, rotation.CheckUnpublished} {
		rep.Stores[1].Status = string([]byte(st)) // not the constant's bytes
		require.Equal(t, rep.Broken(), rep.Summary().Broken(), st)
		require.Equal(t, st, rep.Summary().Stores[1].Status)
	}
}
