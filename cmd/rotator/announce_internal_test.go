package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// Overdue and upcoming events are sent once per episode.
func TestAnnounceOverdueAndUpcoming(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "policies.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`stores: [{name: local, files: {dir: s}}]
notify:
  webhooks: [{name: w, url: "http://127.0.0.1:1/", secret: {env: X}}]
  remind_before: 2h
secrets:
  - {id: tok/old, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: a}]}
  - {id: tok/fresh, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: b}]}
`), 0o600))
	f, err := policy.Load(p)
	require.NoError(t, err)
	db, err := state.Open(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, db.SyncSecrets(ctx, secretDefs(f)))
	now := time.Now()
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $2, next_due_at = $3 WHERE id = $1`,
		"tok/old", now.Add(-40*24*time.Hour), now.Add(-10*24*time.Hour))
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $2, next_due_at = $3 WHERE id = $1`,
		"tok/fresh", now.Add(-30*24*time.Hour+time.Hour), now.Add(time.Hour))
	require.NoError(t, err)

	var events []rotation.Event
	d := &daemon{a: &app{}, db: db, engine: &rotation.Engine{Events: func(e rotation.Event) { events = append(events, e) }}}
	d.gen.Store(&generation{file: f})
	d.ann.announce(ctx, d, now)
	require.Len(t, events, 2)
	kinds := map[string]string{}
	for _, e := range events {
		kinds[e.SecretID] = e.Kind
	}
	require.Equal(t, map[string]string{"tok/old": policy.EventOverdue, "tok/fresh": policy.EventUpcoming}, kinds)

	// Within announceEvery nothing is scanned; later, nothing is repeated.
	d.ann.announce(ctx, d, now.Add(time.Minute))
	d.ann.announce(ctx, d, now.Add(announceEvery+time.Minute))
	require.Len(t, events, 2)

	// Rotated: the overdue episode ends; overdue again later: sent again.
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $1 WHERE id = 'tok/old'`, now)
	require.NoError(t, err)
	d.ann.announce(ctx, d, now.Add(3*announceEvery))
	require.Len(t, events, 2)
	_, err = db.Pool().Exec(ctx, `UPDATE rotator_secrets SET last_success_at = $1 WHERE id = 'tok/old'`, now.Add(-40*24*time.Hour))
	require.NoError(t, err)
	d.ann.announce(ctx, d, now.Add(5*announceEvery))
	require.Len(t, events, 3)
	require.Equal(t, policy.EventOverdue, events[2].Kind)
}
