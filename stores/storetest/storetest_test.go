package storetest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/storetest"
)

// memStore is a minimal reference Store that checks the suite itself: it
// must pass with and without staging.
type memStore struct {
	stages bool
	mu     sync.Mutex
	paths  map[string]*memPath
}

type memPath struct {
	current, previous, pending *rotation.Version
	// prior is what was previous before current was published.
	prior *rotation.Version
	// withdrawn are the runs a discarding rollback withdrew.
	withdrawn map[string]bool
}

var _ rotation.Store = (*memStore)(nil)

func (s *memStore) at(path string) *memPath {
	if s.paths == nil {
		s.paths = map[string]*memPath{}
	}
	p := s.paths[path]
	if p == nil {
		p = &memPath{}
		s.paths[path] = p
	}
	return p
}

func (s *memStore) Stage(ctx context.Context, req rotation.StageRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stage %s: %w", req.Path, err)
	}
	if !s.stages {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.at(req.Path)
	if p.current != nil && p.current.RunID == req.Version.RunID {
		return nil
	}
	v := req.Version
	p.pending = &v
	return nil
}

func (s *memStore) Publish(ctx context.Context, req rotation.PublishRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish %s: %w", req.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.at(req.Path)
	if p.current != nil && p.current.RunID == req.Version.RunID {
		return nil
	}
	if p.withdrawn[req.Version.RunID] && !req.RollForward {
		return rotation.Withdrawn("mem "+req.Path, req.Version.RunID)
	}
	if e := req.Expect; e != nil {
		found := ""
		if p.current != nil {
			found = p.current.RunID
		}
		if found != e.RunID {
			return rotation.StoreMoved("mem "+req.Path, e.RunID, found, "")
		}
	}
	v := req.Version
	p.prior = p.previous
	p.previous, p.current = p.current, &v
	if p.pending != nil && p.pending.RunID == v.RunID {
		p.pending = nil
	}
	return nil
}

func (s *memStore) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	if err := ctx.Err(); err != nil {
		return rotation.DescribeResponse{}, fmt.Errorf("describe %s: %w", req.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.at(req.Path)
	meta := func(v *rotation.Version) *rotation.VersionMeta {
		if v == nil {
			return nil
		}
		m := v.Meta()
		return &m
	}
	return rotation.DescribeResponse{Current: meta(p.current), Previous: meta(p.previous), Pending: meta(p.pending)}, nil
}

func (s *memStore) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	if err := ctx.Err(); err != nil {
		return rotation.Version{}, fmt.Errorf("read %s: %w", req.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.at(req.Path)
	v := p.current
	if req.Which == rotation.Previous {
		v = p.previous
	}
	if v == nil {
		return rotation.Version{}, fmt.Errorf("read %s: %w", req.Path, rotation.ErrNotFound)
	}
	// Round-trip through the flat form, as real stores do.
	return rotation.ParseData(v.Data())
}

func (s *memStore) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rollback %s: %w", req.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.at(req.Path)
	if req.Discard {
		if p.withdrawn == nil {
			p.withdrawn = map[string]bool{}
		}
		p.withdrawn[req.RunID] = true
	}
	if p.current == nil || p.current.RunID != req.RunID {
		return nil
	}
	if p.previous == nil {
		return rotation.Permanent(fmt.Errorf("rollback %s: no previous version: %w", req.Path, rotation.ErrNotFound))
	}
	p.current, p.previous = p.previous, p.current
	if req.Discard {
		p.previous, p.prior = p.prior, nil
	}
	return nil
}

func (s *memStore) Abort(ctx context.Context, req rotation.AbortRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("abort %s: %w", req.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.at(req.Path)
	if p.pending != nil && p.pending.RunID == req.RunID {
		p.pending = nil
	}
	return nil
}

func TestMemStore(t *testing.T) {
	t.Parallel()
	for _, stages := range []bool{false, true} {
		t.Run(fmt.Sprintf("stages=%v", stages), func(t *testing.T) {
			t.Parallel()
			s := &memStore{stages: stages}
			storetest.Run(t, storetest.Harness{
				New:    func(*testing.T) (rotation.Store, string) { return s, "app/" + storetest.RunID() },
				Stages: stages,
			})
		})
	}
}
