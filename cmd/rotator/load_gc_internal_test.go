package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/daemon"
)

// TestLargeFileLoadsAtTheReloadGOGC: a policies file of largeFile bytes or
// more is loaded with GOGC held at daemon.ReloadGCPercent, and the
// setting is put back after the load; a lower setting is left as it is.
// Not parallel: GOGC is the process's.
func TestLargeFileLoadsAtTheReloadGOGC(t *testing.T) {
	var b strings.Builder
	b.WriteString("stores: [{name: local, files: {dir: out}}]\nsecrets:\n")
	for i := 0; b.Len() < largeFile; i++ {
		fmt.Fprintf(&b, "  - {id: tok/t%06d, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t%06d}]}\n", i, i)
	}
	path := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	a := &app{policiesPath: path}
	// seen loads the file while another goroutine reads GOGC, and
	// returns every value read during the load.
	seen := func() map[int]bool {
		vals := map[int]bool{}
		done, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
			for {
				metrics.Read(s)
				vals[int(s[0].Value.Uint64())] = true
				select {
				case <-done:
					return
				default:
				}
			}
		}()
		_, err := a.loadPolicy()
		close(done)
		<-stopped
		require.NoError(t, err)
		return vals
	}
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	require.True(t, seen()[daemon.ReloadGCPercent], "GOGC was held at %d during the load", daemon.ReloadGCPercent)
	require.Equal(t, 100, debug.SetGCPercent(10), "put back after the load")
	require.Equal(t, map[int]bool{10: true}, seen(), "a lower GOGC is left as it is")
	require.Equal(t, 10, debug.SetGCPercent(100))
}
