package redis

import (
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotator/rotator/internal/sharedpool"
)

// Pools shares admin clients between the rotators of users on the same
// server with the same admin URL (address, credentials, database, TLS):
// one client, whose pool holds at most SharedPoolSize connections,
// instead of a client (and a fresh authenticated connection) per secret
// and per call. Build one per process (cmd/rotator's wiring does) and
// pass it with WithPools; Close closes them all. The zero value is not
// usable: call NewPools.
//
// The map is keyed by the SHA-256 of the admin URL: it holds no plaintext
// URL or password. A pooled connection carries no state from one call
// to the next: the admin connections send no AUTH, SELECT or CLIENT
// command after the one the client sends when it connects (the URL's
// own), and the fence's WATCH is taken on a connection of its own for
// the transaction and ended by EXEC or UNWATCH before the connection goes
// back (go-redis Client.Watch).
//
// An admin URL replaced by another of the same server, user and
// database (an operator changed the admin password: the wiring resolves
// the URL at each target) is superseded: its client leaves the map and
// is closed when the last rotator built on it is closed, instead of
// keeping connections authenticated with the old password open until
// Close (a daemon generation's end).
type Pools struct {
	set *sharedpool.Set[*goredis.Client]
}

// NewPools returns an empty set of shared admin clients.
func NewPools() *Pools {
	return &Pools{set: sharedpool.New(func(c *goredis.Client) { _ = c.Close() }, errPoolsClosed)}
}

// SharedPoolSize bounds the connections of a shared admin client when
// the admin URL does not set pool_size: admin commands are short, and
// several users of one server may be checked or rotated at once.
const SharedPoolSize = 8

// errPoolsClosed is returned when shared admin clients are asked for
// after Close.
var errPoolsClosed = errors.New("redis admin clients are closed")

// identity names what an admin URL connects to and as whom, without its
// password.
func identity(o *goredis.Options) string {
	return fmt.Sprintf("%s\x00%s\x00%d\x00%t", o.Addr, o.Username, o.DB, o.TLSConfig != nil)
}

// get returns the client of the admin URL whose key is key and options
// o, creating it on first use (no I/O), for one more rotator
// (Rotator.Close releases it). A client of another URL with the same
// identity is superseded.
func (p *Pools) get(key [32]byte, o *goredis.Options) (*sharedpool.Entry[*goredis.Client], error) {
	return p.set.Get(key, identity(o), func() (*goredis.Client, error) { return goredis.NewClient(sharedOptions(o)), nil })
}

// sharedOptions are o bounded for sharing: at most pool_size
// (SharedPoolSize by default) connections in all, pipelines included.
func sharedOptions(o *goredis.Options) *goredis.Options {
	s := *o
	if s.PoolSize <= 0 {
		s.PoolSize = SharedPoolSize
	}
	if s.MaxActiveConns <= 0 || s.MaxActiveConns > s.PoolSize {
		// go-redis dials beyond PoolSize unless MaxActiveConns caps it.
		s.MaxActiveConns = s.PoolSize
	}
	if s.PipelinePoolSize == 0 {
		// No second pool for pipelines: the transactions of the fence
		// run on the connection their WATCH took anyway.
		s.PipelinePoolSize = -1
	}
	return &s
}

// Close closes every client. A rotator that still uses one gets
// "redis: client is closed" from its next call.
func (p *Pools) Close() { p.set.Close() }

// WithPools makes the rotator take its admin client from shared clients
// (its Close then leaves the client open; Pools.Close closes it). A
// rotator given WithHook keeps a client of its own: hooks belong to a
// client, and a test's hook must not see other secrets' commands.
func WithPools(p *Pools) Option { return func(x *Rotator) { x.pools = p } }
