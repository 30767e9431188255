package schedule_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rotator/rotator/schedule"
)

// BenchmarkNextWithPeers is one due time of a secret that shares its
// server with n others (Rule.Peers): a sync computes one per secret.
func BenchmarkNextWithPeers(b *testing.B) {
	for _, n := range []int{100, 5000} {
		peers := make([]string, n)
		for i := range peers {
			peers[i] = fmt.Sprintf("db/tenant-%05d", i)
		}
		r := schedule.Rule{Interval: 90 * 24 * time.Hour, Jitter: 6 * time.Hour, Peers: schedule.NewPeers(peers...)}
		last := time.Date(2026, 9, 1, 3, 0, 0, 0, time.UTC)
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, _, err := r.Next(peers[i%n], last, last); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
