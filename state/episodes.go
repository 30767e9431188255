package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Episode returns the open notification episode of a secret at a sink (as
// the notifier serialised it); ok is false when none is open.
func (db *DB) Episode(ctx context.Context, secretID, sink string) (data []byte, ok bool, err error) {
	err = db.pool.QueryRow(ctx, `SELECT episode FROM rotator_notify_episodes WHERE secret_id = $1 AND sink = $2`, secretID, sink).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read notification episode of %s at %s: %w", secretID, sink, err)
	}
	return data, true, nil
}

// SaveEpisode opens or replaces an episode.
func (db *DB) SaveEpisode(ctx context.Context, secretID, sink string, data []byte) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO rotator_notify_episodes (secret_id, sink, episode) VALUES ($1, $2, $3)
		ON CONFLICT (secret_id, sink) DO UPDATE SET episode = EXCLUDED.episode, updated_at = now()`, secretID, sink, data)
	if err != nil {
		return fmt.Errorf("save notification episode of %s at %s: %w", secretID, sink, err)
	}
	return nil
}

// EndEpisode closes an episode; closing none is not an error.
func (db *DB) EndEpisode(ctx context.Context, secretID, sink string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM rotator_notify_episodes WHERE secret_id = $1 AND sink = $2`, secretID, sink)
	if err != nil {
		return fmt.Errorf("end notification episode of %s at %s: %w", secretID, sink, err)
	}
	return nil
}
