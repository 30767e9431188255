package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/state"
)

// Fault campaign on the lean reload's ticks and SIGTERM (docs/decisions.md,
// attack8). These use newLeanWorld, so they are not parallel.

// A SIGTERM that stops a lean reload while it waits for the users of the
// generation in force puts that generation back; the drain then serves it,
// and its users come and go (here a status page read ends and the next
// begins at once). The given-up wait must not be a sync.WaitGroup's Wait
// still pending on the users: a new user once the count had reached zero
// made it panic ("WaitGroup is reused before previous Wait has
// returned"), which killed the daemon in the middle of its drain.
func TestGenerationPutBackBySIGTERMTakesNewUsers(t *testing.T) {
	drained := make(chan struct{}, 8)
	w := newLeanWorld(t, leanOpts{n: 2, rotated: true, onDrain: func() { drained <- struct{}{} }})
	// A status page read in flight: the lean reload waits for it.
	g, done := w.d.UseGeneration()
	require.NotNil(t, g)
	w.write(t, "# every line moves\n"+tokenPolicies(3, ""))
	select {
	case <-drained:
	case <-time.After(60 * time.Second):
		done()
		t.Fatalf("no lean reload:\n%s", w.log.String())
	}
	w.stop() // SIGTERM
	w.waitLog(t, msgStopped, 1)
	require.Contains(t, w.log.String(), `"policies_in_force":"the old ones"`)

	// The read ends; the next one starts at once, on the generation put
	// back, and lasts until the daemon has stopped.
	done()
	g2, done2 := w.d.UseGeneration()
	require.Same(t, g, g2, "the generation was put back")
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		done2()
		t.Fatalf("the daemon did not stop:\n%s", w.log.String())
	}
	done2()
	require.NoError(t, w.err)
	require.Contains(t, w.log.String(), `"msg":"daemon stopped"`)
}

// Two syncs of different policies at once on one state database (a
// daemon's reload of a new file, and a CronJob's `run --due` still on the
// old one). Each clears the mark's key before it writes; the one that
// records first cannot know that the other still writes. Here the old
// file's sync runs whole, and records its key, while the new file's sync
// is between its batches; the new file's sync then writes its last batch
// and finds the mark recorded since it read it. Its writes overlap the
// other's rows: it must take that key back, or the next sync of the old
// file is skipped over rows it did not write. (The new file's sync is
// played by its statements, as Generation.Sync issues them.)
func TestConcurrentSyncsDoNotLeaveAMarkOverRowsTheOtherWrote(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	gen := func(class string) *daemon.Generation {
		t.Helper()
		require.NoError(t, os.WriteFile(path, []byte(`stores: [{name: local, files: {dir: s}}]
secrets:
  - {id: tok/a, class: `+class+`, rotator: {token: {}}, publish: [{store: local, path: a}]}
`), 0o600))
		f, err := policy.Load(path)
		require.NoError(t, err)
		g, err := daemon.NewGeneration(f, nil)
		require.NoError(t, err)
		return g
	}
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, gen("admin_token").Sync(ctx, db, time.Now()))

	// The new file's sync begins: it reads the mark and clears its key.
	newer := gen("database")
	mark, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.NoError(t, db.ClearScheduleSync(ctx))
	// Meanwhile the old file's sync runs whole and records its key.
	require.NoError(t, gen("admin_token").Sync(ctx, db, time.Now()))
	// The new file's sync writes its last batch, then records: refused.
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "tok/a", Class: "database"}}))
	err = daemon.RecordSyncMark(ctx, db, mark, daemon.SyncKey(newer.File.Hash))
	require.NoError(t, err)

	m, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.NotEqual(t, daemon.SyncKey(gen("admin_token").File.Hash), m.Key, "the mark vouches for rows the other sync rewrote")
	require.NoError(t, gen("admin_token").Sync(ctx, db, time.Now()))
	s, err := db.Secret(ctx, "tok/a")
	require.NoError(t, err)
	require.Equal(t, "admin_token", s.Class, "the next sync of the old file was skipped")
}

// Two syncs of the same policies at once (a daemon's reload and a
// CronJob's `run --due` of the same new file; or two overlapping
// CronJob runs): the one whose record is refused leaves the other's key,
// which names its own policies: both wrote the same due times, and the
// next sync is skipped (a CronJob whose syncs overlap does not sync whole
// at every run).
func TestConcurrentSyncsOfTheSamePoliciesKeepTheMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`stores: [{name: local, files: {dir: s}}]
secrets:
  - {id: tok/a, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: a}]}
`), 0o600))
	f, err := policy.Load(path)
	require.NoError(t, err)
	g, err := daemon.NewGeneration(f, nil)
	require.NoError(t, err)
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)

	// One sync begins (reads the mark, clears its key); another runs
	// whole and records; the first writes its last batch and records.
	mark, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.NoError(t, db.ClearScheduleSync(ctx))
	require.NoError(t, g.Sync(ctx, db, time.Now()))
	require.NoError(t, db.SyncSecrets(ctx, []state.SecretDef{{ID: "tok/a", Class: "admin_token"}}))
	require.NoError(t, daemon.RecordSyncMark(ctx, db, mark, daemon.SyncKey(f.Hash)))

	m, err := db.ScheduleSync(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.SyncKey(f.Hash), m.Key, "the key of the same policies was taken back")
}

// A reload whose sync fails half-way (here the state database refuses
// its mark, after its rows took the new class and due times) leaves the
// old policies in force; the rows it rewrote must follow them again at
// once: the daemon syncs only at a reload, and a secret left due at the
// refused file's later time (90 days, not 30) would rotate two months
// late. Both an ordinary reload (one secret changed) and a lean one
// (every line).
func TestRefusedSyncLeavesTheRowsOfThePoliciesInForce(t *testing.T) {
	for _, tc := range []struct {
		name string
		text func(string) string
	}{
		{"ordinary", func(p string) string {
			return strings.Replace(p, "{id: tok/t000, class: admin_token", "{id: tok/t000, class: database", 1)
		}},
		{"lean", func(p string) string {
			return "# every line moves\n" + strings.ReplaceAll(p, "class: admin_token", "class: database")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newLeanWorld(t, leanOpts{n: 4, rotated: true})
			ctx := context.Background()
			due := func() time.Time {
				s, err := w.db.Secret(ctx, "tok/t000")
				require.NoError(t, err)
				require.NotNil(t, s.NextDueAt)
				return *s.NextDueAt
			}
			before := due()
			_, err := w.db.Pool().Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'test: sync mark refused'; END $$;
				CREATE TRIGGER refuse BEFORE UPDATE ON rotator_schedule_sync FOR EACH ROW WHEN (NEW.sync_key <> '') EXECUTE FUNCTION refuse()`)
			require.NoError(t, err)
			w.write(t, tc.text(tokenPolicies(4, "")))
			w.waitLog(t, msgRefused, 1)
			require.Contains(t, w.log.String(), "test: sync mark refused")
			if tc.name == "lean" {
				require.Contains(t, w.log.String(), msgLean)
			} else {
				require.NotContains(t, w.log.String(), msgLean)
			}

			require.True(t, before.Equal(due()), "due %s, not %s as the policies in force say", due(), before)
			s, err := w.db.Secret(ctx, "tok/t000")
			require.NoError(t, err)
			require.Equal(t, "admin_token", s.Class, "the row keeps the refused file's class")
		})
	}
}

// In the steady state (a CronJob's `run --due` every minute, the policies
// unchanged) a sync writes nothing: not the mark (its key is cleared
// only by a sync that writes), not a row.
func TestSteadySyncWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(tokenPolicies(3, "")), 0o600))
	f, err := policy.Load(path)
	require.NoError(t, err)
	g, err := daemon.NewGeneration(f, nil)
	require.NoError(t, err)
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, g.Sync(ctx, db, time.Now()))
	versions := func() string {
		var v string
		require.NoError(t, db.Pool().QueryRow(ctx, `SELECT (SELECT xmin::text FROM rotator_schedule_sync) || ' ' ||
			(SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM rotator_secrets)`).Scan(&v))
		return v
	}
	before := versions()
	require.NoError(t, g.Sync(ctx, db, time.Now().Add(time.Minute)))
	require.Equal(t, before, versions(), "a sync of unchanged policies wrote")
}
