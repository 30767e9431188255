package state

import (
	"context"
	"fmt"
)

// SetStatus queues a change of the secret's status.
func (b *Batch) SetStatus(secretID string, status SecretStatus) {
	b.b.Queue(`UPDATE rotator_secrets SET status = $2, updated_at = now() WHERE id = $1`, secretID, status)
}

// MarkDrift queues marking the secret drift, with what differs as its last
// error.
func (b *Batch) MarkDrift(secretID, detail string) {
	b.b.Queue(`UPDATE rotator_secrets SET status = $2, last_outcome = $2, last_error = $3, updated_at = now() WHERE id = $1`,
		secretID, SecretDrift, detail)
}

const maxRunVersionSQL = `SELECT coalesce(max(version), 0) FROM rotator_runs WHERE secret_id = $1`

// MaxRunVersion is the highest version number any run of the secret has
// recorded (0 when none).
func (db *DB) MaxRunVersion(ctx context.Context, secretID string) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, maxRunVersionSQL, secretID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read the highest version of %s: %w", secretID, err)
	}
	return n, nil
}
