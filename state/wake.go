package state

import (
	"context"
	"fmt"
	"time"
)

// NextWait returns, in one indexed query (rotator_runs_waiting), the
// earliest wait_until after now among unfinished runs: when the next run
// that waits (for clients in verify, the monitor window, a retire or a
// compensation to try again) can be continued. Zero when none waits.
func (db *DB) NextWait(ctx context.Context, now time.Time) (time.Time, error) {
	var at *time.Time
	err := db.pool.QueryRow(ctx, `SELECT min(wait_until) FROM rotator_runs WHERE `+activeRunSQL+` AND wait_until > $1`, now).Scan(&at)
	if err != nil {
		return time.Time{}, fmt.Errorf("query the next waiting run: %w", err)
	}
	if at == nil {
		return time.Time{}, nil
	}
	return *at, nil
}
