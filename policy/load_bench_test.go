package policy

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkLoadCronSchedules: Parse of a file loaded in pieces whose
// secrets each have a cron schedule, 840 distinct ones (minute, hour and
// weekday spread), as a person spreading rotations by hand writes them.
// The validator checks a year of firings of each schedule once per load
// (the pieces share the answers), not once per piece.
//
//	go test ./policy -run '^$' -bench LoadCronSchedules -benchtime 3x
func BenchmarkLoadCronSchedules(b *testing.B) {
	for _, n := range []int{5000, 20000} {
		var t strings.Builder
		t.WriteString("version: 1\nstores:\n  - {name: local, files: {dir: out}}\nsecrets:\n")
		for i := range n {
			fmt.Fprintf(&t, "  - {id: t/t%06d, class: admin_token, cron: '%d %d * * %d', rotator: {token: {}}, publish: [{store: local, path: t%06d}]}\n",
				i, i%60, i%24, i%7, i)
		}
		data := []byte(t.String())
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			b.Cleanup(SetPieceSizes(0, streamChunk))
			for b.Loop() {
				f, _, err := parse("policies.yaml", data, nil)
				if err != nil {
					b.Fatal(err)
				}
				if f.pieces == nil {
					b.Fatal("not loaded in pieces")
				}
			}
		})
	}
}
