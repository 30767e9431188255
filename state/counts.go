package state

import (
	"context"
	"fmt"
	"time"
)

// CountActiveRuns counts the unfinished runs (running, waiting,
// needs_attention) with the given status, for the daemon's metrics. It
// reads the partial index of unfinished runs; a finished status counts 0.
func (db *DB) CountActiveRuns(ctx context.Context, status RunStatus) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM rotator_runs WHERE `+activeRunSQL+` AND status = $1`, status).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count %s runs: %w", status, err)
	}
	return n, nil
}

// CountHeldRuns counts the runs held at verify (waiting, their detail
// starting with HeldDetailPrefix), for the daemon's metrics; it reads the
// partial index of unfinished runs.
func (db *DB) CountHeldRuns(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM rotator_runs WHERE `+activeRunSQL+` AND status = $1 AND starts_with(detail, $2)`,
		RunWaiting, HeldDetailPrefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count held runs: %w", err)
	}
	return n, nil
}

// SecretSummary is what the daemon's metrics need of a secret: no
// metadata, no errors, so reading 100,000 of them stays cheap.
type SecretSummary struct {
	ID, Class string
	Status    SecretStatus
	// Since is the last success, or the row's creation when never rotated.
	Since     time.Time
	NextDueAt *time.Time
}

// SecretSummaries reads the summary of every secret, ordered by id.
func (db *DB) SecretSummaries(ctx context.Context) ([]SecretSummary, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, class, status, coalesce(last_success_at, created_at), next_due_at
		FROM rotator_secrets ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []SecretSummary
	for rows.Next() {
		var s SecretSummary
		if err := rows.Scan(&s.ID, &s.Class, &s.Status, &s.Since, &s.NextDueAt); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// SecretsChanged is a cheap fingerprint of rotator_secrets: the number of
// rows and the latest updated_at. Every write of a row moves updated_at,
// so an unchanged fingerprint means the summaries read before still hold.
func (db *DB) SecretsChanged(ctx context.Context) (n int, last time.Time, err error) {
	var at *time.Time
	if err := db.pool.QueryRow(ctx, `SELECT count(*), max(updated_at) FROM rotator_secrets`).Scan(&n, &at); err != nil {
		return 0, time.Time{}, fmt.Errorf("fingerprint secrets: %w", err)
	}
	if at != nil {
		last = *at
	}
	return n, last, nil
}
