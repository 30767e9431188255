package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rotator/rotator/internal/sharedpool"
)

// Pools shares admin connection pools between the rotators of secrets that
// use the same admin DSN: one server, one pool, instead of a pool (and a
// fresh authenticated connection) per secret. Build one per process
// (cmd/rotator's wiring does) and pass it with WithPools; Close closes
// them all. The zero value is not usable: call NewPools.
//
// The set is keyed by the SHA-256 of the DSN (no plaintext DSN kept), and
// a DSN replaced by another of the same server, user and database (a
// changed admin password) closes with its last rotator instead of keeping
// sessions of the old password until Close (internal/sharedpool, as the
// MariaDB and Redis rotators' pools).
type Pools struct {
	set *sharedpool.Set[*pgxpool.Pool]
}

// errPoolsClosed is returned by a rotator whose shared pools were closed.
var errPoolsClosed = errors.New("admin connection pools are closed")

// NewPools returns an empty set of shared pools.
func NewPools() *Pools {
	return &Pools{set: sharedpool.New((*pgxpool.Pool).Close, errPoolsClosed)}
}

// sharedMaxConns is the size of a shared pool when the DSN does not set
// pool_max_conns: admin statements are short, and several secrets of one
// server may rotate at once (--per-server).
const sharedMaxConns = 8

// identity names what a DSN connects to and as whom, without its
// password.
func identity(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%t", c.Host, c.Port, c.User, c.Database, c.TLSConfig != nil)
}

// get returns the pool for the DSN whose config is cfg, creating it on
// first use (no I/O), for one more rotator (Rotator.Close releases it).
func (p *Pools) get(dsn string, cfg *pgxpool.Config) (*sharedpool.Entry[*pgxpool.Pool], error) {
	return p.set.Get(sharedpool.Key(dsn), identity(cfg), func() (*pgxpool.Pool, error) {
		c := cfg.Copy()
		if c.MaxConns < sharedMaxConns {
			c.MaxConns = sharedMaxConns
		}
		return pgxpool.NewWithConfig(context.Background(), c)
	})
}

// Close closes every pool.
func (p *Pools) Close() { p.set.Close() }

// WithPools makes the rotator take its admin pool from shared pools (its
// Close then leaves the pool open; Pools.Close closes it, or its last
// rotator's Close once its DSN was superseded).
func WithPools(p *Pools) Option { return func(x *Rotator) { x.pools = p } }
