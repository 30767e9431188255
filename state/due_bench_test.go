package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/state"
)

// BenchmarkDue measures the due-set query (the one query each tick makes)
// on 100,000 secrets, inserted directly with generate_series:
//
//	go test ./state -run '^$' -bench BenchmarkDue -benchtime 200x
//
// none: every secret is scheduled in the future (the common, idle case);
// 1000: 1% of them are due (the tick's default limit is 1000);
// all: every secret is due, the query returns the first 1000;
// runs: as none, plus 1,000 unfinished runs waiting for clients (500 due).
func BenchmarkDue(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	dsn := pgtest.NewDatabase(b)
	db, err := state.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	pool := db.Pool()
	now := time.Now()
	// Every secret was rotated some time in the last 30 days and is due
	// in the next 30 days; one in a hundred of them is overdue by a minute.
	if _, err := pool.Exec(ctx, `INSERT INTO rotator_secrets (id, class, current_version, last_success_at, next_due_at)
		SELECT 'bench/s' || lpad(g::text, 6, '0'), 'admin_token', 1,
		       $1::timestamptz - (g % 30) * interval '1 day',
		       $1::timestamptz + (1 + g % 43200) * interval '1 minute'
		FROM generate_series(1, $2::int) g`, now, n); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE rotator_secrets`); err != nil {
		b.Fatal(err)
	}
	setDue := func(b *testing.B, every int) {
		b.Helper()
		if _, err := pool.Exec(ctx, `UPDATE rotator_secrets SET next_due_at = CASE
			WHEN substr(id, 8)::int % $2 = 0 THEN $1::timestamptz - interval '1 minute'
			ELSE $1::timestamptz + (1 + substr(id, 8)::int % 43200) * interval '1 minute' END`, now, every); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE rotator_secrets`); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, want int) {
		b.Helper()
		b.ResetTimer()
		for b.Loop() {
			ids, err := db.Due(ctx, now, 1000)
			if err != nil {
				b.Fatal(err)
			}
			if len(ids) != want {
				b.Fatalf("due: %d ids, want %d", len(ids), want)
			}
		}
	}
	b.Run("none", func(b *testing.B) { setDue(b, n+1); run(b, 0) })
	b.Run("1000", func(b *testing.B) { setDue(b, 100); run(b, 1000) })
	b.Run("all", func(b *testing.B) { setDue(b, 1); run(b, 1000) })
	b.Run("runs", func(b *testing.B) {
		setDue(b, n+1)
		if _, err := pool.Exec(ctx, `INSERT INTO rotator_runs (id, secret_id, trigger, status, step, version, wait_until)
			SELECT 'run-' || g, 'bench/s' || lpad(g::text, 6, '0'), 'schedule', 'waiting', 'verify', 2,
			       CASE WHEN g % 2 = 0 THEN $1::timestamptz - interval '1 second' ELSE $1::timestamptz + interval '1 minute' END
			FROM generate_series(1, 1000) g`, now); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `ANALYZE rotator_runs`); err != nil {
			b.Fatal(err)
		}
		run(b, 500)
	})
}
