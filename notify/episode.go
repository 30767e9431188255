package notify

import (
	"context"
	"slices"
	"sync"
	"time"
)

// EpisodeKey names the failure episode of one secret at one sink. Each sink
// keeps its own episode, so a sink that was down when the first alert went
// out still posts the next one.
type EpisodeKey struct {
	SecretID string
	Sink     string
}

// Episode is an open failure episode: what was posted, and where.
type Episode struct {
	// OpenedAt is the time of the event that opened it.
	OpenedAt time.Time
	// Kinds are the alert kinds posted in the episode (rotation_failed,
	// then perhaps rollback...). A repeat of one of them is suppressed.
	Kinds []Kind
	// Alert is the receipt of the first alert: the resolved message
	// threads under it in Slack bot mode.
	Alert Receipt
	// Suppressed counts the repeats not posted.
	Suppressed int
}

// EpisodeStore keeps open failure episodes. The Notifier calls it from the
// sink's own goroutine, so calls for one key never overlap within a
// process. MemoryEpisodes keeps them in memory; a store backed by the state
// database lets the episode outlive the process (a CronJob run, a daemon
// restart) so the next run neither re-alerts nor forgets to resolve.
type EpisodeStore interface {
	// Lookup returns the open episode for key; ok is false when none is
	// open.
	Lookup(ctx context.Context, key EpisodeKey) (ep Episode, ok bool, err error)
	// Save opens the episode for key or replaces the open one.
	Save(ctx context.Context, key EpisodeKey, ep Episode) error
	// End closes the episode for key. Ending an episode that is not open
	// is not an error.
	End(ctx context.Context, key EpisodeKey) error
}

// MemoryEpisodes is an EpisodeStore in process memory. Episodes are lost on
// restart: the first alert after a restart posts again, and a success
// after a restart does not post "resolved".
type MemoryEpisodes struct {
	mu sync.Mutex
	m  map[EpisodeKey]Episode
}

var _ EpisodeStore = (*MemoryEpisodes)(nil)

// NewMemoryEpisodes returns an empty in-memory store.
func NewMemoryEpisodes() *MemoryEpisodes {
	return &MemoryEpisodes{m: map[EpisodeKey]Episode{}}
}

// Lookup implements EpisodeStore.
func (s *MemoryEpisodes) Lookup(_ context.Context, key EpisodeKey) (Episode, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ep, ok := s.m[key]
	ep.Kinds = slices.Clone(ep.Kinds)
	return ep, ok, nil
}

// Save implements EpisodeStore.
func (s *MemoryEpisodes) Save(_ context.Context, key EpisodeKey, ep Episode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = ep
	return nil
}

// End implements EpisodeStore.
func (s *MemoryEpisodes) End(_ context.Context, key EpisodeKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}
