package postgres

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pools shares admin connection pools between the rotators of secrets that
// use the same admin DSN: one server, one pool, instead of a pool (and a
// fresh authenticated connection) per secret. Build one per process
// (cmd/rotator's wiring does) and pass it with WithPools; Close closes
// them all. The zero value is not usable: call NewPools.
type Pools struct {
	mu     sync.Mutex
	m      map[[32]byte]*pgxpool.Pool
	closed bool
}

// NewPools returns an empty set of shared pools.
func NewPools() *Pools { return &Pools{m: map[[32]byte]*pgxpool.Pool{}} }

// sharedMaxConns is the size of a shared pool when the DSN does not set
// pool_max_conns: admin statements are short, and several secrets of one
// server may rotate at once (--per-server).
const sharedMaxConns = 8

// get returns the pool for the DSN whose config is cfg, creating it on
// first use. Creating a pool does no I/O.
func (p *Pools) get(dsn string, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	key := sha256.Sum256([]byte(dsn)) // the map holds no plaintext DSN
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("admin connection pools are closed")
	}
	if pool, ok := p.m[key]; ok {
		return pool, nil
	}
	c := cfg.Copy()
	if c.MaxConns < sharedMaxConns {
		c.MaxConns = sharedMaxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), c)
	if err != nil {
		return nil, err
	}
	p.m[key] = pool
	return pool, nil
}

// Close closes every pool.
func (p *Pools) Close() {
	p.mu.Lock()
	pools := p.m
	p.m, p.closed = map[[32]byte]*pgxpool.Pool{}, true
	p.mu.Unlock()
	for _, pool := range pools {
		pool.Close()
	}
}

// WithPools makes the rotator take its admin pool from shared pools (its
// Close then leaves the pool open; Pools.Close closes it).
func WithPools(p *Pools) Option { return func(x *Rotator) { x.pools = p } }
