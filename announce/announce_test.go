package announce_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/announce"
	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/state"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// policies indexes a loaded file by id, as the daemon's generation does.
type policies struct {
	f     *policy.File
	specs map[string]*policy.SecretSpec
}

func (p policies) Settings(id string) (policy.Settings, bool) {
	s, ok := p.specs[id]
	if !ok {
		return policy.Settings{}, false
	}
	return p.f.Settings(s), true
}

func (p policies) RemindBefore() time.Duration { return p.f.Notify.RemindBefore.D() }

// Overdue and upcoming events are sent once per episode.
func TestAnnounceOverdueAndUpcoming(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`stores: [{name: local, files: {dir: s}}]
notify:
  webhooks: [{name: w, url: "http://127.0.0.1:1/", secret: {env: X}}]
  remind_before: 2h
secrets:
  - {id: tok/old, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: a}]}
  - {id: tok/fresh, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: b}]}
`), 0o600))
	f, err := policy.Load(path)
	require.NoError(t, err)
	p := policies{f: f, specs: map[string]*policy.SecretSpec{}}
	var defs []state.SecretDef
	for _, s := range f.Secrets {
		p.specs[s.ID] = s
		defs = append(defs, state.SecretDef{ID: s.ID, Class: f.Settings(s).Class})
	}
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, db.SyncSecrets(ctx, defs))
	now := time.Now()
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $2, next_due_at = $3 WHERE id = $1`,
		"tok/old", now.Add(-40*24*time.Hour), now.Add(-10*24*time.Hour))
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $2, next_due_at = $3 WHERE id = $1`,
		"tok/fresh", now.Add(-30*24*time.Hour+time.Hour), now.Add(time.Hour))
	require.NoError(t, err)

	var events []notify.Event
	emit := func(e notify.Event) { events = append(events, e) }
	var a announce.Announcer
	require.NoError(t, a.Announce(ctx, db, p, emit, now))
	require.Len(t, events, 2)
	kinds := map[string]notify.Kind{}
	for _, e := range events {
		kinds[e.SecretID] = e.Kind
	}
	require.Equal(t, map[string]notify.Kind{"tok/old": notify.KindOverdue, "tok/fresh": notify.KindUpcoming}, kinds)

	// Within Every nothing is scanned; later, nothing is repeated.
	every := announce.DefaultEvery
	require.NoError(t, a.Announce(ctx, db, p, emit, now.Add(time.Minute)))
	require.NoError(t, a.Announce(ctx, db, p, emit, now.Add(every+time.Minute)))
	require.Len(t, events, 2)

	// Rotated: the overdue episode ends; overdue again later: sent again.
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $1 WHERE id = 'tok/old'`, now)
	require.NoError(t, err)
	require.NoError(t, a.Announce(ctx, db, p, emit, now.Add(3*every)))
	require.Len(t, events, 2)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $1 WHERE id = 'tok/old'`, now.Add(-40*24*time.Hour))
	require.NoError(t, err)
	require.NoError(t, a.Announce(ctx, db, p, emit, now.Add(5*every)))
	require.Len(t, events, 3)
	require.Equal(t, notify.KindOverdue, events[2].Kind)
}
