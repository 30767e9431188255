package redis

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	goredis "github.com/redis/go-redis/v9"
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
	mu      sync.Mutex
	m       map[[32]byte]*sharedClient
	retired map[*sharedClient]struct{} // superseded, still used by a rotator
	closed  bool
}

// sharedClient is one admin URL's client and how many rotators use it.
type sharedClient struct {
	c          *goredis.Client
	identity   string // server, user, database: the URL without its password
	users      int    // rotators built on it and not closed
	superseded bool
}

// NewPools returns an empty set of shared admin clients.
func NewPools() *Pools {
	return &Pools{m: map[[32]byte]*sharedClient{}, retired: map[*sharedClient]struct{}{}}
}

// SharedPoolSize bounds the connections of a shared admin client when
// the admin URL does not set pool_size: admin commands are short, and
// several users of one server may be checked or rotated at once.
const SharedPoolSize = 8

// errPoolsClosed is returned when shared admin clients are asked for
// after Close.
var errPoolsClosed = errors.New("redis admin clients are closed")

// urlKey is the map key of an admin URL: its SHA-256, never the URL.
func urlKey(u string) [32]byte { return sha256.Sum256([]byte(u)) }

// identity names what an admin URL connects to and as whom, without its
// password.
func identity(o *goredis.Options) string {
	return fmt.Sprintf("%s\x00%s\x00%d\x00%t", o.Addr, o.Username, o.DB, o.TLSConfig != nil)
}

// get returns the client of the admin URL whose key is key and options
// o, creating it on first use, for one more rotator (release it with
// release). Creating a client does no I/O. A client of another URL with
// the same identity is superseded.
func (p *Pools) get(key [32]byte, o *goredis.Options) (*sharedClient, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolsClosed
	}
	if s, ok := p.m[key]; ok {
		s.users++
		p.mu.Unlock()
		return s, nil
	}
	id := identity(o)
	var unused []*goredis.Client
	for k, s := range p.m {
		if s.identity != id {
			continue
		}
		delete(p.m, k)
		s.superseded = true
		if s.users == 0 {
			unused = append(unused, s.c)
		} else {
			p.retired[s] = struct{}{}
		}
	}
	s := &sharedClient{c: goredis.NewClient(sharedOptions(o)), identity: id, users: 1}
	p.m[key] = s
	p.mu.Unlock()
	for _, c := range unused {
		_ = c.Close()
	}
	return s, nil
}

// release ends one rotator's use of s; a superseded client closes with
// its last user.
func (p *Pools) release(s *sharedClient) {
	p.mu.Lock()
	s.users--
	last := s.superseded && s.users == 0 && !p.closed
	if last {
		delete(p.retired, s)
	}
	p.mu.Unlock()
	if last {
		_ = s.c.Close()
	}
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
func (p *Pools) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var clients []*goredis.Client
	for _, s := range p.m {
		clients = append(clients, s.c)
	}
	for s := range p.retired {
		clients = append(clients, s.c)
	}
	p.m, p.retired, p.closed = map[[32]byte]*sharedClient{}, map[*sharedClient]struct{}{}, true
	p.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
}

// WithPools makes the rotator take its admin client from shared clients
// (its Close then leaves the client open; Pools.Close closes it). A
// rotator given WithHook keeps a client of its own: hooks belong to a
// client, and a test's hook must not see other secrets' commands.
func WithPools(p *Pools) Option { return func(x *Rotator) { x.pools = p } }
