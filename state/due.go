package state

import (
	"context"
	"fmt"
	"time"
)

// Due returns, in one indexed query, the secrets a tick must look at: those
// whose next_due_at has come (active, not quarantined, no unfinished run)
// and those with an unfinished run whose wait_until has come (or that is
// running: a run whose process died resumes once its lease expires).
// Ordered by how long they have waited; at most limit.
func (db *DB) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT id FROM (
			SELECT s.id, s.next_due_at AS at FROM rotator_secrets s
			WHERE s.`+activeSecretSQL+` AND s.next_due_at <= $1
			  AND NOT EXISTS (SELECT 1 FROM rotator_runs r WHERE r.secret_id = s.id AND r.`+activeRunSQL+`)
			UNION ALL
			SELECT r.secret_id, coalesce(r.wait_until, r.updated_at) AS at FROM rotator_runs r
			WHERE r.`+activeRunSQL+` AND (r.wait_until IS NULL OR r.wait_until <= $1)
		) due ORDER BY at LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("query due secrets: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// DueAt is a secret's next due time.
type DueAt struct {
	ID  string
	At  time.Time
	Why string
	// Seen, when set, is the row's updated_at when the due time was
	// computed from it: the row is updated only if nothing has written it
	// since (a run started, succeeded or failed in another process), so a
	// due time computed from a stale read never overwrites a newer one.
	Seen time.Time
}

// SetNextDue records next due times in one statement; a row whose Seen
// no longer matches is left alone.
func (db *DB) SetNextDue(ctx context.Context, due []DueAt) error {
	if len(due) == 0 {
		return nil
	}
	ids := make([]string, len(due))
	ats := make([]time.Time, len(due))
	seen := make([]*time.Time, len(due))
	for i, d := range due {
		ids[i], ats[i] = d.ID, d.At
		if !d.Seen.IsZero() {
			seen[i] = &due[i].Seen
		}
	}
	_, err := db.pool.Exec(ctx, `UPDATE rotator_secrets s SET next_due_at = u.at, updated_at = now()
		FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS u(id, at, seen)
		WHERE s.id = u.id AND s.next_due_at IS DISTINCT FROM u.at
		  AND (u.seen IS NULL OR s.updated_at = u.seen)`, ids, ats, seen)
	if err != nil {
		return fmt.Errorf("record due times: %w", err)
	}
	return nil
}

// Resume lifts a quarantine: the secret is active again, its failure count
// reset, and due at once. It returns false when it was not quarantined.
func (db *DB) Resume(ctx context.Context, secretID, actor string) (bool, error) {
	var resumed bool
	err := db.pool.QueryRow(ctx, `WITH u AS (
			UPDATE rotator_secrets SET status = $2, consecutive_failures = 0, next_due_at = now(), updated_at = now()
			WHERE id = $1 AND status = $3 RETURNING id)
		SELECT count(*) > 0 FROM u`, secretID, SecretActive, SecretQuarantined).Scan(&resumed)
	if err != nil {
		return false, fmt.Errorf("resume %s: %w", secretID, err)
	}
	if resumed {
		_, err = db.pool.Exec(ctx, auditSQL, secretID, nil, actor, "resumed", "quarantine lifted")
	}
	return resumed, err
}

// Counts summarises the secrets for metrics and status.
type Counts struct {
	Total, Quarantined, Overdue, Running, Waiting int
}

// SecretCounts counts secrets by state; overdue is decided by the caller's
// rule through overdueBefore: a secret whose last success (or creation, if
// never rotated) is before overdueBefore[class] is overdue.
func (db *DB) SecretCounts(ctx context.Context, overdueAfter map[string]time.Duration, now time.Time) (Counts, error) {
	var c Counts
	classes := make([]string, 0, len(overdueAfter))
	limits := make([]time.Time, 0, len(overdueAfter))
	for cl, d := range overdueAfter {
		classes = append(classes, cl)
		limits = append(limits, now.Add(-d))
	}
	err := db.pool.QueryRow(ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE status = $3),
		       count(*) FILTER (WHERE coalesce(last_success_at, created_at) < o.lim),
		       (SELECT count(*) FROM rotator_runs WHERE status = $4),
		       (SELECT count(*) FROM rotator_runs WHERE status = $5)
		FROM rotator_secrets s
		LEFT JOIN unnest($1::text[], $2::timestamptz[]) AS o(class, lim) ON o.class = s.class`,
		classes, limits, SecretQuarantined, RunRunning, RunWaiting).
		Scan(&c.Total, &c.Quarantined, &c.Overdue, &c.Running, &c.Waiting)
	if err != nil {
		return c, fmt.Errorf("count secrets: %w", err)
	}
	return c, nil
}
