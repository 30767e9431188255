// Package storetest is the conformance suite every rotation.Store must pass.
//
// A store's own tests call Run with a Harness that builds the store and
// hands out fresh paths:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) (rotation.Store, string) {
//				return newStore(t), "app/" + storetest.RunID()
//			},
//			Stages: false,
//		})
//	}
//
// # What it asserts
//
// Every sentence of the rotation.Store doc comments, one subtest each, all
// in parallel on their own paths:
//
//   - An empty path: Describe returns a zero response and no error; Read of
//     the current or previous version returns an error wrapping
//     rotation.ErrNotFound; Rollback and Abort of any run are no-ops.
//   - Publish makes a version current (Number, RunID, RotatedAt, Fingerprint
//     and Username as published) and keeps the one that was current as
//     Previous; Read round-trips the secret, username, key id, secret field
//     and extra fields of both, byte for byte.
//   - Publish is idempotent per run id: publishing the current version's run
//     again changes nothing. Only the current version's run id counts:
//     publishing a run that is not current (even the previous one's, with
//     the same content) is a new publish, which makes it current and the
//     former current previous.
//   - Rollback(RunID of the current version) makes the previous version's
//     data current and keeps the rolled-back version as Previous. Stores that
//     write a rollback as a new version may renumber it, so the suite checks
//     the credential and fingerprint, not Number or RunID, of the restored
//     current. A second Rollback of the same run, a Rollback of a run that is
//     not current and a Rollback on an empty path change nothing. A Rollback
//     with no previous version may fail, but must leave the current readable.
//   - Stage: with Harness.Stages the staged version is Describe's Pending and
//     nothing else changes; Stage is idempotent; Publish of the staged run
//     clears Pending. Without Stages, Stage changes nothing at all. Stage on
//     an empty path never makes a version current.
//   - Abort of a staged run removes it (Describe as before the Stage); Abort
//     of an unknown run, a second Abort, and an Abort of a run that was
//     published change nothing and return nil.
//   - Concurrent Publish of two runs leaves one current and the other
//     previous, each readable whole (its secret matches its fingerprint and
//     run id); a reader running meanwhile sees only whole published
//     versions, never ErrNotFound or a torn mix. A publish that fails under
//     the race (a compare-and-set conflict) may fail if retrying it, as the
//     engine would, succeeds.
//   - The fence (PublishRequest.Expect): a writer that observed v1 as
//     current publishes after another writer made v2 current; the store
//     refuses with an error matching rotation.ErrStoreMoved and
//     rotation.ErrFenced, permanent, naming both run ids; v2 stays current
//     and v1 previous. The other writer's publish retried with the same
//     stale expectation is a no-op success (its version is current). An
//     expectation of nothing published holds on an empty path and is
//     refused once something is.
//   - A discarding rollback (RollbackRequest.Discard) of v3 after v1, v2,
//     v3: v2 is current and v1 previous again, as before v3 was published
//     (repeated: no change); without Discard v3 stays readable as previous.
//   - No error returned by any call in the suite contains a secret, and no
//     Describe response prints one; a subtest calls every method with a
//     canceled context to provoke errors.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/derive"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
)

// Harness tells Run how to build the store under test.
type Harness struct {
	// New returns a store and a fresh path in it, unique per call (tests
	// run in parallel). Clean up with t.Cleanup.
	New func(t *testing.T) (rotation.Store, string)
	// Stages: the store keeps staged versions and reports them as
	// DescribeResponse.Pending.
	Stages bool
}

// RunID returns a fresh run id shaped like the engine's (a random UUID, 36
// characters, which also fits AWS's 32-64 character ClientRequestToken).
func RunID() string { return uuid.NewString() }

// Version builds a test Version with a random high-entropy password, a
// blue/green username chosen by number, and connection fields in Extra.
func Version(t testing.TB, number int64, runID string) rotation.Version {
	t.Helper()
	user := "app_blue"
	if number%2 == 0 {
		user = "app_green"
	}
	return rotation.Version{
		Number:    number,
		RunID:     runID,
		RotatedAt: time.Now().UTC().Truncate(time.Millisecond),
		Credential: rotation.Credential{
			Username: user,
			Secret:   secret.New(randomSecret()),
			Extra:    map[string]string{"host": "db.internal", "port": "5432", "database": "app"},
		},
	}
}

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Run runs the conformance suite against the store h builds.
func Run(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.New, "storetest.Harness.New is required")
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"EmptyPath", testEmptyPath},
		{"PublishFirst", testPublishFirst},
		{"PublishKeepsPrevious", testPublishKeepsPrevious},
		{"PublishIdempotent", testPublishIdempotent},
		{"PublishNotCurrentRunIsNewPublish", testPublishNotCurrentRun},
		{"RoundTripFields", testRoundTripFields},
		{"KeyRingDocument", testKeyRingDocument},
		{"DerivedFieldsFollowTheirVersion", testDerivedFields},
		{"Rollback", testRollback},
		{"RollbackNotCurrentRun", testRollbackNotCurrentRun},
		{"RollbackWithoutPrevious", testRollbackWithoutPrevious},
		{"StageThenPublish", testStageThenPublish},
		{"StageOnEmptyPath", testStageOnEmptyPath},
		{"StageThenAbort", testStageThenAbort},
		{"AbortUnknownRun", testAbortUnknownRun},
		{"AbortAfterPublish", testAbortAfterPublish},
		{"ConcurrentPublish", testConcurrentPublish},
		{"StaleWriterRefused", testStaleWriter},
		{"ExpectNothingPublished", testExpectNothing},
		{"RollbackDiscardRestoresPrevious", testRollbackDiscard},
		{"DiscardedRunIsRefused", testDiscardedRunRefused},
		{"CanceledContextErrors", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

// fixture wraps the store under test at one path. Every call goes through
// it, so every error is checked for every secret the subtest handed over.
type fixture struct {
	t     *testing.T
	store rotation.Store
	path  string
	ctx   context.Context

	mu      sync.Mutex
	secrets []string
}

func newFixture(t *testing.T, h Harness) *fixture {
	t.Helper()
	s, p := h.New(t)
	require.NotNil(t, s, "Harness.New returned a nil store")
	require.NotEmpty(t, p, "Harness.New returned an empty path")
	return &fixture{t: t, store: s, path: p, ctx: t.Context()}
}

func (f *fixture) remember(v rotation.Version) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets = append(f.secrets, v.Credential.Secret.Reveal())
}

// noSecret fails the test (without printing the secret) when s contains
// one the subtest used. Safe from any goroutine.
func (f *fixture) noSecret(what, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, sec := range f.secrets {
		if sec != "" && strings.Contains(s, sec) {
			f.t.Errorf("%s contains a secret (%d characters of text withheld)", what, len(s))
			return
		}
	}
}

func (f *fixture) check(op string, err error) error {
	if err != nil {
		f.noSecret(op+" error", err.Error())
	}
	return err
}

func (f *fixture) publishCtx(ctx context.Context, v rotation.Version) error {
	f.remember(v)
	return f.check("Publish", f.store.Publish(ctx, rotation.PublishRequest{Path: f.path, Version: v}))
}

func (f *fixture) publish(v rotation.Version) {
	f.t.Helper()
	require.NoError(f.t, f.publishCtx(f.ctx, v), "Publish run %s", v.RunID)
}

func (f *fixture) stageCtx(ctx context.Context, v rotation.Version) error {
	f.remember(v)
	return f.check("Stage", f.store.Stage(ctx, rotation.StageRequest{Path: f.path, Version: v}))
}

func (f *fixture) stage(v rotation.Version) {
	f.t.Helper()
	require.NoError(f.t, f.stageCtx(f.ctx, v), "Stage run %s", v.RunID)
}

func (f *fixture) describeCtx(ctx context.Context) (rotation.DescribeResponse, error) {
	d, err := f.store.Describe(ctx, rotation.DescribeRequest{Path: f.path})
	if f.check("Describe", err) == nil {
		f.noSecret("Describe response", fmt.Sprintf("%+v %+v %+v %+v", d, d.Current, d.Previous, d.Pending))
	}
	return d, err
}

func (f *fixture) describe() rotation.DescribeResponse {
	f.t.Helper()
	d, err := f.describeCtx(f.ctx)
	require.NoError(f.t, err, "Describe")
	return d
}

func (f *fixture) readCtx(ctx context.Context, w rotation.Which) (rotation.Version, error) {
	v, err := f.store.Read(ctx, rotation.ReadRequest{Path: f.path, Which: w})
	return v, f.check("Read", err)
}

func (f *fixture) read(w rotation.Which) rotation.Version {
	f.t.Helper()
	v, err := f.readCtx(f.ctx, w)
	require.NoError(f.t, err, "Read %s", whichName(w))
	return v
}

func (f *fixture) readNotFound(w rotation.Which) {
	f.t.Helper()
	_, err := f.readCtx(f.ctx, w)
	require.ErrorIs(f.t, err, rotation.ErrNotFound, "Read %s of a path without one", whichName(w))
}

func (f *fixture) publishExpect(v rotation.Version, e rotation.Expect) error {
	f.remember(v)
	return f.check("Publish", f.store.Publish(f.ctx, rotation.PublishRequest{Path: f.path, Version: v, Expect: &e}))
}

func (f *fixture) discard(runID string) {
	f.t.Helper()
	err := f.check("Rollback", f.store.Rollback(f.ctx, rotation.RollbackRequest{Path: f.path, RunID: runID, Discard: true}))
	require.NoError(f.t, err, "Rollback (discard) run %s", runID)
}

// testDiscardedRunRefused: after a discarding rollback of a run (whether
// or not the store held its version), a publish of that run is refused as
// withdrawn (it can only be a delayed request of a process that lost its
// lease, since a run that compensated is over), and the store is left as
// it was; the run's own roll forward (RollForward) still publishes it, and
// other runs publish as before.
func testDiscardedRunRefused(t *testing.T, h Harness) {
	f := newFixture(t, h)
	r0, r1, never, r2 := Version(t, 1, RunID()), Version(t, 2, RunID()), Version(t, 2, RunID()), Version(t, 3, RunID())
	f.publish(r0)
	f.publish(r1)
	f.discard(r1.RunID)
	requireVersion(t, r0, f.read(rotation.Current), "put back")
	f.discard(never.RunID) // a run that never published here
	for _, v := range []rotation.Version{r1, never} {
		err := f.publishExpect(v, rotation.Expect{RunID: r0.RunID})
		require.Error(t, err, "a publish of a withdrawn run is refused")
		require.ErrorIs(t, err, rotation.ErrStoreMoved)
		require.ErrorIs(t, err, rotation.ErrFenced)
		require.True(t, rotation.IsPermanent(err), "the refusal is permanent: %v", err)
		require.Contains(t, err.Error(), v.RunID)
		require.Contains(t, err.Error(), "withdrawn")
		requireVersion(t, r0, f.read(rotation.Current), "the store is left as it was")
	}
	f.remember(never)
	require.NoError(t, f.check("Publish", f.store.Publish(f.ctx, rotation.PublishRequest{Path: f.path, Version: never,
		Expect: &rotation.Expect{RunID: r0.RunID}, RollForward: true})), "the run's own roll forward")
	requireVersion(t, never, f.read(rotation.Current), "rolled forward")
	require.NoError(t, f.publishExpect(r2, rotation.Expect{RunID: never.RunID}), "another run publishes as before")
	requireVersion(t, r2, f.read(rotation.Current), "published")
}

// requireMoved checks a refusal by the fence.
func requireMoved(t *testing.T, err error, expected, found string) {
	t.Helper()
	require.Error(t, err, "a publish with a stale expectation must be refused")
	require.ErrorIs(t, err, rotation.ErrStoreMoved)
	require.ErrorIs(t, err, rotation.ErrFenced)
	require.True(t, rotation.IsPermanent(err), "the refusal is permanent: %v", err)
	var me *rotation.StoreMovedError
	require.ErrorAs(t, err, &me)
	require.Equal(t, expected, me.Expected, "expected run id in the refusal")
	require.Equal(t, found, me.Found, "found run id in the refusal")
	if expected != "" {
		require.Contains(t, err.Error(), expected)
	}
	if found != "" {
		require.Contains(t, err.Error(), found)
	}
}

func (f *fixture) rollbackCtx(ctx context.Context, runID string) error {
	return f.check("Rollback", f.store.Rollback(ctx, rotation.RollbackRequest{Path: f.path, RunID: runID}))
}

func (f *fixture) rollback(runID string) {
	f.t.Helper()
	require.NoError(f.t, f.rollbackCtx(f.ctx, runID), "Rollback run %s", runID)
}

func (f *fixture) abortCtx(ctx context.Context, runID string) error {
	return f.check("Abort", f.store.Abort(ctx, rotation.AbortRequest{Path: f.path, RunID: runID}))
}

func (f *fixture) abort(runID string) {
	f.t.Helper()
	require.NoError(f.t, f.abortCtx(f.ctx, runID), "Abort run %s", runID)
}

func whichName(w rotation.Which) string {
	if w == rotation.Previous {
		return "previous"
	}
	return "current"
}

// metaString renders a VersionMeta for comparisons (times compared as
// instants, whatever their location).
func metaString(m *rotation.VersionMeta) string {
	if m == nil {
		return "<nil>"
	}
	return fmt.Sprintf("number=%d run_id=%s rotated_at=%s fingerprint=%s username=%s",
		m.Number, m.RunID, m.RotatedAt.UTC().Format(time.RFC3339Nano), m.Fingerprint, m.Username)
}

func describeString(d rotation.DescribeResponse) string {
	return "current{" + metaString(d.Current) + "} previous{" + metaString(d.Previous) + "} pending{" + metaString(d.Pending) + "}"
}

func requireSameDescribe(t *testing.T, want, got rotation.DescribeResponse, msg string) {
	t.Helper()
	require.Equal(t, describeString(want), describeString(got), msg)
}

// requireMeta checks that m describes v exactly.
func requireMeta(t *testing.T, v rotation.Version, m *rotation.VersionMeta, what string) {
	t.Helper()
	require.NotNil(t, m, "%s: want run %s, got none", what, v.RunID)
	require.Equal(t, metaString(ptr(v.Meta())), metaString(m), what)
}

// requireFingerprint checks that m describes v's credential (for versions a
// store may renumber: restored by a rollback).
func requireFingerprint(t *testing.T, v rotation.Version, m *rotation.VersionMeta, what string) {
	t.Helper()
	require.NotNil(t, m, "%s: want the version of run %s, got none", what, v.RunID)
	require.Equal(t, v.Credential.Secret.Fingerprint(), m.Fingerprint, "%s: fingerprint", what)
	require.Equal(t, v.Credential.Username, m.Username, "%s: username", what)
}

func ptr[T any](v T) *T { return &v }

// requireCredential checks that got carries want's credential, byte for
// byte, without printing the secret.
func requireCredential(t *testing.T, want, got rotation.Version, what string) {
	t.Helper()
	wc, gc := want.Credential, got.Credential
	require.True(t, wc.Secret.Equal(gc.Secret), "%s: secret differs (fingerprint want %s, got %s)",
		what, wc.Secret.Fingerprint(), gc.Secret.Fingerprint())
	require.Equal(t, wc.Username, gc.Username, "%s: username", what)
	require.Equal(t, wc.KeyID, gc.KeyID, "%s: key id", what)
	require.Equal(t, wc.SecretField(), gc.SecretField(), "%s: secret field", what)
	require.Equal(t, nonNil(wc.Extra), nonNil(gc.Extra), "%s: extra fields", what)
	require.Equal(t, len(wc.Derived), len(gc.Derived), "%s: derived secret fields", what)
	for k, x := range wc.Derived {
		require.True(t, x.Equal(gc.Derived[k]), "%s: derived field %q differs (fingerprint want %s, got %s)",
			what, k, x.Fingerprint(), gc.Derived[k].Fingerprint())
	}
}

// requireVersion checks credential and metadata.
func requireVersion(t *testing.T, want, got rotation.Version, what string) {
	t.Helper()
	requireCredential(t, want, got, what)
	require.Equal(t, metaString(ptr(want.Meta())), metaString(ptr(got.Meta())), "%s: metadata", what)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

func testEmptyPath(t *testing.T, h Harness) {
	f := newFixture(t, h)
	requireSameDescribe(t, rotation.DescribeResponse{}, f.describe(), "Describe of an empty path is zero")
	f.readNotFound(rotation.Current)
	f.readNotFound(rotation.Previous)
	f.rollback(RunID())
	f.abort(RunID())
	requireSameDescribe(t, rotation.DescribeResponse{}, f.describe(), "Rollback and Abort on an empty path change nothing")
	f.readNotFound(rotation.Current)
}

func testPublishFirst(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1 := Version(t, 1, RunID())
	f.publish(v1)
	d := f.describe()
	requireMeta(t, v1, d.Current, "current after the first publish")
	require.Nil(t, d.Previous, "no previous after the first publish")
	require.Nil(t, d.Pending, "no pending after a publish")
	requireVersion(t, v1, f.read(rotation.Current), "Read current")
	f.readNotFound(rotation.Previous)
}

func testPublishKeepsPrevious(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.publish(v2)
	d := f.describe()
	requireMeta(t, v2, d.Current, "current")
	requireMeta(t, v1, d.Previous, "previous")
	require.Nil(t, d.Pending, "pending")
	requireVersion(t, v2, f.read(rotation.Current), "Read current")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous")

	v3 := Version(t, 3, RunID())
	f.publish(v3)
	d = f.describe()
	requireMeta(t, v3, d.Current, "current after a third publish")
	requireMeta(t, v2, d.Previous, "previous after a third publish")
	requireVersion(t, v2, f.read(rotation.Previous), "Read previous after a third publish")
}

func testPublishIdempotent(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.publish(v2)
	before := f.describe()
	f.publish(v2)
	f.publish(v2)
	requireSameDescribe(t, before, f.describe(), "a retried publish adds no version")
	requireVersion(t, v2, f.read(rotation.Current), "Read current after retried publishes")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous after retried publishes")
}

// testPublishNotCurrentRun: only the current version's run id makes a
// publish a no-op. Publishing the previous run's version again (same
// content) is a new publish.
func testPublishNotCurrentRun(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.publish(v2)
	f.publish(v1)
	d := f.describe()
	requireMeta(t, v1, d.Current, "current after publishing the previous run again")
	requireMeta(t, v2, d.Previous, "previous after publishing the previous run again")
	requireVersion(t, v1, f.read(rotation.Current), "Read current")
	requireVersion(t, v2, f.read(rotation.Previous), "Read previous")
}

func testRoundTripFields(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1 := Version(t, 1, RunID())
	v2 := Version(t, 2, RunID())
	v2.Credential = rotation.Credential{
		Secret: secret.New(randomSecret() + ` "quoted" \back\slash/ ünïcødé €	tab`),
		Field:  "api_key",
		KeyID:  "key-" + randomSecret()[:8],
		Extra:  map[string]string{"url": "https://api.example.com/v1?x=1&y=2", "note": "ünïcødé \"quotes\""},
	}
	f.publish(v1)
	f.publish(v2)
	d := f.describe()
	requireMeta(t, v2, d.Current, "current api key")
	requireMeta(t, v1, d.Previous, "previous password")
	requireVersion(t, v2, f.read(rotation.Current), "Read current api key")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous password")
}

// testKeyRingDocument publishes what the keyring rotator does: a JSON
// document (appsecret.Ring) as the secret, under its own field, with the
// signing key's id; the largest ring a policy allows in steady state
// (four keys of 1024 bytes, about 5.6 KB) comes back byte for byte, and
// the previous ring stays readable.
func testKeyRingDocument(t *testing.T, h Harness) {
	f := newFixture(t, h)
	ring := func(number int64) rotation.Version {
		now := time.Now().UTC().Truncate(time.Millisecond)
		var keys []appsecret.RingKey
		for i, st := range []string{appsecret.KeyAccepted, appsecret.KeyAccepted, appsecret.KeySigning, appsecret.KeyNext} {
			material := make([]byte, 1024)
			_, _ = rand.Read(material)
			k := appsecret.NewRingKey(fmt.Sprintf("k%d-%d", number, i), st, now, material)
			if i == 0 {
				k.AcceptUntil = now.Add(time.Hour)
			}
			keys = append(keys, k)
		}
		r := appsecret.Ring{Algorithm: "HS256", MaxTokenLifetime: time.Hour, Keys: keys}
		doc, err := r.Encode()
		require.NoError(t, err)
		v := Version(t, number, RunID())
		v.Credential = rotation.Credential{Secret: secret.New(doc), Field: "keyring", KeyID: fmt.Sprintf("k%d-2", number)}
		return v
	}
	v1, v2 := ring(1), ring(2)
	f.publish(v1)
	f.publish(v2)
	requireMeta(t, v2, f.describe().Current, "current ring")
	got := f.read(rotation.Current)
	requireVersion(t, v2, got, "Read current ring")
	r, err := appsecret.ParseRing(got.Credential.Secret.Reveal())
	require.NoError(t, err, "the ring read back parses")
	s, _ := r.Signing()
	require.Equal(t, v2.Credential.KeyID, s.ID)
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous ring")
}

// testDerivedFields publishes through rotation.DeriveFields: a DSN with
// the password in it is stored with its version, read back as a secret
// field (not Extra), and a rollback brings back the DSN of the version it
// restores.
func testDerivedFields(t *testing.T, h Harness) {
	f := newFixture(t, h)
	tmpl, err := derive.Parse("postgres://{username}:{password}@{host}:{port}/{database}?sslmode=require")
	require.NoError(t, err)
	plain, err := derive.Parse("{host}:{port}")
	require.NoError(t, err)
	fields := []rotation.DerivedField{{Name: "url", Template: tmpl}, {Name: "addr", Template: plain}}
	f.store = rotation.DeriveFields(f.store, fields)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	v2.Credential.Secret = secret.New(randomSecret() + "@:/?#%")
	want := func(v rotation.Version) rotation.Version {
		d, err := rotation.Derive(v, fields)
		require.NoError(t, err)
		return d
	}
	w1, w2 := want(v1), want(v2)
	require.Contains(t, w1.Credential.Derived["url"].Reveal(), v1.Credential.Secret.Reveal())
	require.Equal(t, "db.internal:5432", w1.Credential.Extra["addr"])
	f.publish(v1)
	f.publish(v2)
	requireVersion(t, w2, f.read(rotation.Current), "Read current with derived fields")
	requireVersion(t, w1, f.read(rotation.Previous), "Read previous with derived fields")
	f.rollback(v2.RunID)
	requireCredential(t, w1, f.read(rotation.Current), "Read current after rollback: the restored version's url")
}

func testRollback(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.publish(v2)
	f.rollback(v2.RunID)

	d := f.describe()
	requireFingerprint(t, v1, d.Current, "current after rollback")
	requireMeta(t, v2, d.Previous, "previous after rollback (the rolled-back version)")
	require.Nil(t, d.Pending, "pending after rollback")
	requireCredential(t, v1, f.read(rotation.Current), "Read current after rollback")
	requireCredential(t, v2, f.read(rotation.Previous), "Read previous after rollback")

	f.rollback(v2.RunID)
	requireSameDescribe(t, d, f.describe(), "a second rollback of the same run changes nothing")
	requireCredential(t, v1, f.read(rotation.Current), "Read current after a second rollback")

	v3 := Version(t, 3, RunID())
	f.publish(v3)
	d = f.describe()
	requireMeta(t, v3, d.Current, "current after a publish that follows a rollback")
	requireFingerprint(t, v1, d.Previous, "previous after a publish that follows a rollback")
	requireCredential(t, v1, f.read(rotation.Previous), "Read previous after a publish that follows a rollback")
}

func testRollbackNotCurrentRun(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.publish(v2)
	before := f.describe()
	f.rollback(RunID())
	requireSameDescribe(t, before, f.describe(), "rollback of an unknown run changes nothing")
	f.rollback(v1.RunID)
	requireSameDescribe(t, before, f.describe(), "rollback of the previous version's run changes nothing")
	requireVersion(t, v2, f.read(rotation.Current), "Read current")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous")
}

// testRollbackWithoutPrevious: the contract does not say what rolling back
// the only version does; a store may refuse. It must not leave clients
// without a current version.
func testRollbackWithoutPrevious(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1 := Version(t, 1, RunID())
	f.publish(v1)
	_ = f.rollbackCtx(f.ctx, v1.RunID) // checked for secrets; may fail
	requireCredential(t, v1, f.read(rotation.Current), "Read current after a rollback with no previous")
	requireFingerprint(t, v1, f.describe().Current, "current after a rollback with no previous")
}

func testStageThenPublish(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	before := f.describe()
	f.stage(v2)
	d := f.describe()
	if h.Stages {
		requireMeta(t, v2, d.Pending, "pending after Stage")
		requireMeta(t, v1, d.Current, "current after Stage")
		require.Nil(t, d.Previous, "previous after Stage")
	} else {
		requireSameDescribe(t, before, d, "Stage on a store without staging changes nothing")
	}
	requireVersion(t, v1, f.read(rotation.Current), "Read current after Stage")

	f.stage(v2)
	requireSameDescribe(t, d, f.describe(), "a retried Stage changes nothing")

	f.publish(v2)
	d = f.describe()
	requireMeta(t, v2, d.Current, "current after publishing the staged run")
	requireMeta(t, v1, d.Previous, "previous after publishing the staged run")
	require.Nil(t, d.Pending, "pending after publishing the staged run")
	requireVersion(t, v2, f.read(rotation.Current), "Read current")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous")
}

func testStageOnEmptyPath(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1 := Version(t, 1, RunID())
	f.stage(v1)
	d := f.describe()
	require.Nil(t, d.Current, "Stage must not make a version current")
	require.Nil(t, d.Previous, "previous after Stage on an empty path")
	if h.Stages {
		requireMeta(t, v1, d.Pending, "pending after Stage on an empty path")
	} else {
		require.Nil(t, d.Pending, "pending on a store without staging")
	}
	f.readNotFound(rotation.Current)

	f.publish(v1)
	d = f.describe()
	requireMeta(t, v1, d.Current, "current after publishing the staged run")
	require.Nil(t, d.Previous, "previous after the first publish")
	require.Nil(t, d.Pending, "pending after publishing the staged run")
	requireVersion(t, v1, f.read(rotation.Current), "Read current")
}

func testStageThenAbort(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	before := f.describe()
	f.stage(v2)
	f.abort(v2.RunID)
	requireSameDescribe(t, before, f.describe(), "Abort of the staged run restores the state before Stage")
	requireVersion(t, v1, f.read(rotation.Current), "Read current after Abort")
	f.readNotFound(rotation.Previous)
	f.abort(v2.RunID)
	requireSameDescribe(t, before, f.describe(), "a second Abort changes nothing")
}

func testAbortUnknownRun(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.stage(v2)
	staged := f.describe()
	f.abort(RunID())
	requireSameDescribe(t, staged, f.describe(), "Abort of an unknown run keeps another run's staged version")
	f.abort(v1.RunID)
	requireSameDescribe(t, staged, f.describe(), "Abort of the current run's id changes nothing")
	requireVersion(t, v1, f.read(rotation.Current), "Read current")
}

func testAbortAfterPublish(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	f.publish(v1)
	f.stage(v2)
	f.publish(v2)
	published := f.describe()
	f.abort(v2.RunID)
	requireSameDescribe(t, published, f.describe(), "Abort of a published run changes nothing")
	requireVersion(t, v2, f.read(rotation.Current), "Read current after Abort of the published run")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous after Abort of the published run")
}

func testConcurrentPublish(t *testing.T, h Harness) {
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			concurrentPublishOnce(t, h)
		})
	}
}

func concurrentPublishOnce(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1 := Version(t, 1, RunID())
	a, b := Version(t, 2, RunID()), Version(t, 3, RunID())
	f.publish(v1)
	known := map[string]rotation.Version{v1.RunID: v1, a.RunID: a, b.RunID: b}

	// A reader runs during the race and must only ever see whole versions.
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- func() error {
			for n := 0; ; n++ {
				select {
				case <-stop:
					if n > 0 {
						return nil
					}
				default:
				}
				got, err := f.readCtx(f.ctx, rotation.Current)
				if err != nil {
					return fmt.Errorf("read %d during concurrent publishes: %w", n, err)
				}
				want, ok := known[got.RunID]
				if !ok {
					return fmt.Errorf("read %d during concurrent publishes returned unknown run id %q", n, got.RunID)
				}
				if !want.Credential.Secret.Equal(got.Credential.Secret) || want.Credential.Username != got.Credential.Username ||
					want.Number != got.Number {
					return fmt.Errorf("read %d during concurrent publishes returned a torn version: run %s with fingerprint %s, username %q, number %d",
						n, got.RunID, got.Credential.Secret.Fingerprint(), got.Credential.Username, got.Number)
				}
			}
		}()
	}()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, v := range []rotation.Version{a, b} {
		wg.Go(func() { errs[i] = f.publishCtx(f.ctx, v) })
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-readerDone)

	// A publish that lost a compare-and-set race may fail; the engine
	// retries it, and so does the suite.
	for i, v := range []rotation.Version{a, b} {
		if errs[i] != nil {
			t.Logf("concurrent Publish of run %s failed (retrying as the engine would): %v", v.RunID, errs[i])
			f.publish(v)
		}
	}

	d := f.describe()
	require.NotNil(t, d.Current, "current after concurrent publishes")
	winner, loser := a, b
	if d.Current.RunID == b.RunID {
		winner, loser = b, a
	}
	requireMeta(t, winner, d.Current, "current after concurrent publishes")
	requireMeta(t, loser, d.Previous, "previous after concurrent publishes (the other run)")
	requireVersion(t, winner, f.read(rotation.Current), "Read current after concurrent publishes")
	requireVersion(t, loser, f.read(rotation.Previous), "Read previous after concurrent publishes")
}

// testCanceledContext provokes errors from every method; whatever a store
// does with a canceled context (fail, or finish), the errors must not
// carry a secret and what is current afterwards must be whole.
func testCanceledContext(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2, v3 := Version(t, 1, RunID()), Version(t, 2, RunID()), Version(t, 3, RunID())
	f.publish(v1)
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	_ = f.stageCtx(ctx, v2)
	_ = f.publishCtx(ctx, v3)
	_, _ = f.describeCtx(ctx)
	_, _ = f.readCtx(ctx, rotation.Current)
	_, _ = f.readCtx(ctx, rotation.Previous)
	_ = f.rollbackCtx(ctx, v3.RunID)
	_ = f.abortCtx(ctx, v2.RunID)

	d := f.describe()
	require.NotNil(t, d.Current, "current after calls with a canceled context")
	cur := f.read(rotation.Current)
	require.Equal(t, d.Current.Fingerprint, cur.Credential.Secret.Fingerprint(), "Describe and Read agree on the current version")
	var found bool
	for _, v := range []rotation.Version{v1, v3} {
		if v.Credential.Secret.Equal(cur.Credential.Secret) {
			found = true
			requireCredential(t, v, cur, "Read current after calls with a canceled context")
		}
	}
	require.True(t, found, "current after calls with a canceled context is neither v1 nor v3")
}

// testStaleWriter: a writer observes v1 as current; another writer
// publishes v2; the first writer's publish of v3, still expecting v1, is
// refused and changes nothing.
func testStaleWriter(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2, v3 := Version(t, 1, RunID()), Version(t, 2, RunID()), Version(t, 3, RunID())
	require.NoError(t, f.publishExpect(v1, rotation.Expect{}), "first publish expecting nothing")
	observed := rotation.Expect{RunID: f.describe().Current.RunID}
	require.Equal(t, v1.RunID, observed.RunID)

	require.NoError(t, f.publishExpect(v2, observed), "the other writer's publish")
	before := f.describe()

	requireMoved(t, f.publishExpect(v3, observed), v1.RunID, v2.RunID)
	requireSameDescribe(t, before, f.describe(), "a refused publish changes nothing")
	requireMeta(t, v2, before.Current, "current after the refused publish")
	requireMeta(t, v1, before.Previous, "previous after the refused publish")
	requireVersion(t, v2, f.read(rotation.Current), "Read current after the refused publish")
	requireVersion(t, v1, f.read(rotation.Previous), "Read previous after the refused publish")

	// The other writer retrying its publish with its own (now stale)
	// expectation: its version is current, so it is a no-op success.
	require.NoError(t, f.publishExpect(v2, observed), "a retried publish of the current version")
	requireSameDescribe(t, before, f.describe(), "a retried publish changes nothing")

	// With what is current now as expectation, v3 goes through.
	require.NoError(t, f.publishExpect(v3, rotation.Expect{RunID: v2.RunID}))
	d := f.describe()
	requireMeta(t, v3, d.Current, "current after a publish with a fresh expectation")
	requireMeta(t, v2, d.Previous, "previous after a publish with a fresh expectation")
}

// testExpectNothing: "nothing published" is an expectation too.
func testExpectNothing(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2 := Version(t, 1, RunID()), Version(t, 2, RunID())
	require.NoError(t, f.publishExpect(v1, rotation.Expect{}))
	requireMoved(t, f.publishExpect(v2, rotation.Expect{}), "", v1.RunID)
	d := f.describe()
	requireMeta(t, v1, d.Current, "current after a refused first publish")
	require.Nil(t, d.Previous, "previous after a refused first publish")
}

// testRollbackDiscard: putting back a failed run's publish restores
// previous too; a real rollback keeps the rolled-back version as previous.
func testRollbackDiscard(t *testing.T, h Harness) {
	f := newFixture(t, h)
	v1, v2, v3 := Version(t, 1, RunID()), Version(t, 2, RunID()), Version(t, 3, RunID())
	f.publish(v1)
	f.publish(v2)
	f.publish(v3)
	f.discard(v3.RunID)
	d := f.describe()
	requireFingerprint(t, v2, d.Current, "current after the discarded publish is put back")
	requireFingerprint(t, v1, d.Previous, "previous after the discarded publish is put back (the last really-current version before v2)")
	require.Nil(t, d.Pending, "pending after the discarded publish is put back")
	requireCredential(t, v2, f.read(rotation.Current), "Read current after discard")
	requireCredential(t, v1, f.read(rotation.Previous), "Read previous after discard")

	f.discard(v3.RunID)
	requireSameDescribe(t, d, f.describe(), "a second discard of the same run changes nothing")

	// The next publish keeps v2 as previous, as if v3 had never been.
	v4 := Version(t, 4, RunID())
	f.publish(v4)
	d = f.describe()
	requireMeta(t, v4, d.Current, "current after a publish that follows a discard")
	requireFingerprint(t, v2, d.Previous, "previous after a publish that follows a discard")

	// Without Discard (a real rollback): the rolled-back version stays
	// readable as previous.
	g := newFixture(t, h)
	w1, w2, w3 := Version(t, 1, RunID()), Version(t, 2, RunID()), Version(t, 3, RunID())
	g.publish(w1)
	g.publish(w2)
	g.publish(w3)
	g.rollback(w3.RunID)
	d = g.describe()
	requireFingerprint(t, w2, d.Current, "current after a rollback")
	requireMeta(t, w3, d.Previous, "previous after a rollback (the rolled-back version)")
	requireCredential(t, w3, g.read(rotation.Previous), "Read previous after a rollback")
}

// SharedOther is the field another writer holds in the documents of a
// Shared harness; its value must survive every test.
const SharedOther = "telegram_token"

// Shared returns a Harness that runs the suite on rotation.SharedFields
// over the DocStore newDoc builds (and a fresh path in it): the secret
// owns db_password, openrouter_key and db_user of a document in which
// another writer put SharedOther first; each test ends by checking that
// SharedOther is still there, unchanged.
func Shared(newDoc func(t *testing.T) (rotation.DocStore, string)) Harness {
	return Harness{New: func(t *testing.T) (rotation.Store, string) {
		d, p := newDoc(t)
		other := "other-writer-" + randomSecret()
		require.NoError(t, d.WriteDoc(t.Context(), p, map[string]string{SharedOther: other}, ""))
		t.Cleanup(func() {
			doc, _, err := d.ReadDoc(context.Background(), p)
			require.NoError(t, err)
			require.Equal(t, other, doc[SharedOther], "the other writer's field survives")
		})
		return rotation.SharedFields(d, rotation.SharedMetaField("db/app"),
			map[string]string{"password": "db_password", "api_key": "openrouter_key", "username": "db_user"}), p
	}}
}
