// Package sharedpool shares one admin connection pool per server between
// the rotators of a process (the Postgres, MariaDB and Redis rotators'
// Pools): keyed by the SHA-256 of the admin DSN or URL, so that no
// plaintext DSN is kept, and counted per rotator, so that a pool whose
// DSN was replaced closes with its last rotator.
//
// A DSN replaced by another of the same identity (server, user,
// database: the DSN without its password; an operator changed the admin
// password, and the wiring resolves the DSN at each target) is
// superseded: its pool leaves the set and is closed when the last
// rotator that took it releases it, instead of living, with sessions
// authenticated with the old password, until Close (a daemon
// generation's end).
package sharedpool

import (
	"crypto/sha256"
	"sync"
)

// Set is a set of shared pools of type P. The zero value is not usable:
// call New.
type Set[P any] struct {
	close     func(P)
	errClosed error

	mu      sync.Mutex
	m       map[[32]byte]*Entry[P]
	retired map[*Entry[P]]struct{} // superseded, still taken by a rotator
	closed  bool
}

// Entry is one shared pool, taken by the rotators that got it from Get
// and have not released it.
type Entry[P any] struct {
	Pool       P
	identity   string
	users      int
	superseded bool
}

// New returns an empty set whose pools close with closeFn; Get after
// Close returns errClosed.
func New[P any](closeFn func(P), errClosed error) *Set[P] {
	return &Set[P]{close: closeFn, errClosed: errClosed, m: map[[32]byte]*Entry[P]{}, retired: map[*Entry[P]]struct{}{}}
}

// Key is the set's key of a DSN: its SHA-256, never the DSN.
func Key(dsn string) [32]byte { return sha256.Sum256([]byte(dsn)) }

// Get returns the pool of the DSN whose key is key, opening it with open
// on first use (open must do no I/O: it runs under the set's lock), for
// one more rotator (release it with Release). A pool of another DSN with
// the same identity is superseded.
func (s *Set[P]) Get(key [32]byte, identity string, open func() (P, error)) (*Entry[P], error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, s.errClosed
	}
	if e, ok := s.m[key]; ok {
		e.users++
		s.mu.Unlock()
		return e, nil
	}
	p, err := open()
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	e := &Entry[P]{Pool: p, identity: identity, users: 1}
	var unused []P
	for k, o := range s.m {
		if o.identity != identity {
			continue
		}
		delete(s.m, k)
		o.superseded = true
		if o.users == 0 {
			unused = append(unused, o.Pool)
		} else {
			s.retired[o] = struct{}{}
		}
	}
	s.m[key] = e
	s.mu.Unlock()
	for _, o := range unused {
		s.close(o)
	}
	return e, nil
}

// Release ends one rotator's use of e; a superseded pool closes with its
// last user.
func (s *Set[P]) Release(e *Entry[P]) {
	s.mu.Lock()
	e.users--
	last := e.superseded && e.users == 0 && !s.closed
	if last {
		delete(s.retired, e)
	}
	s.mu.Unlock()
	if last {
		s.close(e.Pool)
	}
}

// Close closes every pool. A rotator that still uses one gets its pool's
// closed error from its next call.
func (s *Set[P]) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var pools []P
	for _, e := range s.m {
		pools = append(pools, e.Pool)
	}
	for e := range s.retired {
		pools = append(pools, e.Pool)
	}
	s.m, s.retired, s.closed = map[[32]byte]*Entry[P]{}, map[*Entry[P]]struct{}{}, true
	s.mu.Unlock()
	for _, p := range pools {
		s.close(p)
	}
}
