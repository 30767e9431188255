package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SyncMark is what the last schedule sync recorded: its key (the
// policies' content hash and the build that computed the due times) and
// its generation. The zero SyncMark: never synced.
type SyncMark struct {
	Key string
	Gen int64
}

// ScheduleSync reads the last schedule sync's mark.
func (db *DB) ScheduleSync(ctx context.Context) (SyncMark, error) {
	var m SyncMark
	err := db.pool.QueryRow(ctx, `SELECT sync_key, gen FROM rotator_schedule_sync`).Scan(&m.Key, &m.Gen)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("read the schedule sync mark: %w", err)
	}
	return m, nil
}

// ClearScheduleSync takes the last sync's key back before a sync writes:
// should that sync stop half-way (an error, a shutdown, a crash), no
// later sync of the policies the key names is skipped over rows it partly
// rewrote. gen is kept, so the sync records its key after it as
// RecordScheduleSync says; the key is cleared whoever recorded it
// (clearing only ever makes a sync run).
func (db *DB) ClearScheduleSync(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, `UPDATE rotator_schedule_sync SET sync_key = '' WHERE sync_key <> ''`); err != nil {
		return fmt.Errorf("clear the schedule sync mark: %w", err)
	}
	return nil
}

// ClearOtherScheduleSync clears the mark's key unless it is key: after a
// sync of key's policies whose record was refused (another sync recorded
// while it wrote), a key of other policies does not vouch for the rows
// it rewrote; its own key does (the same policies and build write the
// same due times).
func (db *DB) ClearOtherScheduleSync(ctx context.Context, key string) error {
	if _, err := db.pool.Exec(ctx, `UPDATE rotator_schedule_sync SET sync_key = '' WHERE sync_key <> '' AND sync_key <> $1`, key); err != nil {
		return fmt.Errorf("clear the schedule sync mark: %w", err)
	}
	return nil
}

// RecordScheduleSync records that the due times were synced with key,
// after a sync that began by reading prev. It records nothing when
// another sync has recorded since (prev is stale): that process's file
// may differ, so the next tick syncs again rather than trust a key whose
// due times were partly overwritten. It reports whether it recorded.
func (db *DB) RecordScheduleSync(ctx context.Context, prev SyncMark, key string) (bool, error) {
	tag, err := db.pool.Exec(ctx, `INSERT INTO rotator_schedule_sync (sync_key, gen) VALUES ($1, $2 + 1)
		ON CONFLICT (id) DO UPDATE SET sync_key = EXCLUDED.sync_key, gen = EXCLUDED.gen, synced_at = now()
		WHERE rotator_schedule_sync.gen = $2`, key, prev.Gen)
	if err != nil {
		return false, fmt.Errorf("record the schedule sync: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
