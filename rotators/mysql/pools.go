package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/rotator/rotator/internal/sharedpool"
	"github.com/rotator/rotator/rotation"
)

// Pools shares admin connection pools between the rotators of secrets
// that use the same admin DSN: one server, one bounded *sql.DB (at most
// SharedMaxConns connections), instead of a pool (and a fresh
// authenticated connection) per secret and per call. Build one per
// process (cmd/rotator's wiring does) and pass it with WithPools; Close
// closes them all. The zero value is not usable: call NewPools.
//
// The set is keyed by the SHA-256 of the DSN and a DSN replaced by
// another of the same server, user and database closes with its last
// rotator (internal/sharedpool). A pooled connection carries no state
// from one secret to the next: the only session state the rotator
// creates is the fence's named lock, taken and released on a connection
// of its own (see fenced).
type Pools struct {
	set *sharedpool.Set[*adminPool]
}

// NewPools returns an empty set of shared pools.
func NewPools() *Pools {
	return &Pools{set: sharedpool.New((*adminPool).close, errPoolsClosed)}
}

// SharedMaxConns bounds the connections of a shared admin pool: admin
// statements are short, and several secrets of one server may be checked
// or rotated at once.
const SharedMaxConns = 8

// ownMaxConns bounds the pool of a rotator built without WithPools.
const ownMaxConns = 3

// errPoolsClosed is returned by a rotator whose shared pools were closed.
var errPoolsClosed = errors.New("mysql admin connection pools are closed")

// identity names what a DSN connects to and as whom, without its
// password.
func identity(cfg *driver.Config) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s", cfg.Net, cfg.Addr, cfg.User, cfg.DBName, cfg.TLSConfig)
}

// get returns the pool of the DSN whose key is key and config cfg,
// creating it on first use (no I/O), for one more rotator (Rotator.Close
// releases it).
func (p *Pools) get(key [32]byte, cfg *driver.Config) (*sharedpool.Entry[*adminPool], error) {
	return p.set.Get(key, identity(cfg), func() (*adminPool, error) { return newAdminPool(cfg, SharedMaxConns) })
}

// Close closes every pool. A rotator that still uses one gets a
// permanent error from its next call.
func (p *Pools) Close() { p.set.Close() }

// WithPools makes the rotator take its admin pool from shared pools (its
// Close then leaves the pool open; Pools.Close closes it).
func WithPools(p *Pools) Option { return func(x *Rotator) { x.pools = p } }

// adminPool is one admin *sql.DB and whether the server behind it passed
// the server check (checkServer), which runs once per pool, not once per
// rotator.
type adminPool struct {
	db *sql.DB

	mu       sync.Mutex
	closed   bool
	checked  bool          // the server passed checkServer
	checking chan struct{} // closed when the running check ends
}

func newAdminPool(cfg *driver.Config, maxConns int) (*adminPool, error) {
	c, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(maxConns)
	// As many idle as open: a burst of checks reuses its connections
	// rather than closing all but two (database/sql's default) and
	// opening them again.
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(time.Minute)
	return &adminPool{db: db}, nil
}

func (a *adminPool) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	_ = a.db.Close()
}

// ready returns once the server behind the pool has passed check: at
// once when it has; else it runs check, or waits for the call running
// it. A check that fails runs again on the next call. addr names the
// server in the message of a wait whose context ends.
func (a *adminPool) ready(ctx context.Context, addr string, check func(context.Context, *sql.DB) error) error {
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return rotation.Permanent(errPoolsClosed)
		}
		if a.checked {
			a.mu.Unlock()
			return nil
		}
		if wait := a.checking; wait != nil {
			a.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return fmt.Errorf("mysql: waiting for another call's check of the server at %s: %w", addr, ctx.Err())
			}
		}
		wait := make(chan struct{})
		a.checking = wait
		a.mu.Unlock()

		err := check(ctx, a.db)
		a.mu.Lock()
		a.checking, a.checked = nil, err == nil
		closed := a.closed
		a.mu.Unlock()
		close(wait)
		if closed {
			return rotation.Permanent(errPoolsClosed)
		}
		return err
	}
}
