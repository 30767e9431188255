package policy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sameFile: a and b hold the same policies, what the next load may reuse
// (File.pieces, set by the streamed loader only) aside.
func sameFile(a, b *File) bool {
	if a == nil || b == nil {
		return a == b
	}
	ac, bc := *a, *b
	ac.pieces, bc.pieces = nil, nil
	return reflect.DeepEqual(&ac, &bc)
}

// reloadAgrees loads next twice, once reusing prev and once from scratch,
// and requires the same answer: the same File (its piece index included)
// and node count, or the same errors with the same positions. It returns
// the File reusing prev.
func reloadAgrees(t *testing.T, name string, next []byte, prev *File) *File {
	t.Helper()
	fresh, fnodes, ferr := parse(name, next, nil)
	reused, rnodes, rerr := parse(name, next, prev)
	if ferr != nil {
		require.Error(t, rerr, "a load reusing the previous File accepts a file a fresh load refuses: %v", ferr)
		require.Nil(t, reused)
		require.Equal(t, ferr.Error(), rerr.Error(), "the errors and their file:line:column")
		return nil
	}
	require.NoError(t, rerr, "a load reusing the previous File refuses a file a fresh load accepts")
	require.True(t, reflect.DeepEqual(fresh, reused), "the File loaded reusing the previous one differs from a fresh load")
	require.Equal(t, fnodes, rnodes, "the nodes counted")
	whole, _, werr := parseWhole(name, fresh.Dir(), next)
	require.NoError(t, werr)
	require.True(t, sameFile(whole, reused), "the whole loader's File")
	return reused
}

// shared counts the secrets of next that are prev's own structs.
func shared(prev, next *File) int {
	old := map[*SecretSpec]bool{}
	for _, s := range prev.Secrets {
		old[s] = true
	}
	n := 0
	for _, s := range next.Secrets {
		if old[s] {
			n++
		}
	}
	return n
}

// TestStreamedLoadReuses: a load given the previous File takes the pieces
// whose text, lines and header did not change from it and decodes the
// rest; whatever the edit, the File is the one a fresh load gives, and a
// refused file gets the fresh load's errors.
func TestStreamedLoadReuses(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk))
	n := 3*streamChunk + 7 // four pieces, the last of 7
	good := bigFile(n)
	const name = "policies.yaml"
	prev, _, err := parse(name, []byte(good), nil)
	require.NoError(t, err)
	require.NotNil(t, prev.pieces, "loaded in pieces")
	require.Len(t, prev.pieces.pieces, 4)

	api := func(i int) string { // the text of api_key secret i (i % 4 == 3)
		return fmt.Sprintf("  - id: a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {token: {length: 40}}\n    publish: [{store: local, path: a/a%05d.json}]\n", i, i)
	}
	require.Contains(t, good, api(streamChunk+3))
	inPiece1 := streamChunk + 3
	cases := []struct {
		name string
		text string
		// shared: how many secrets of the new File are prev's.
		shared int
	}{
		{"unchanged", good, n},
		// After notify: the text around the list changed.
		{"a comment appended", good + "# reloaded\n", 0},
		// What bench/scale.sh does to make the daemon reload (its list
		// ends the file).
		{"a comment at the end of the list", strings.Replace(good, "notify:", "# the end of the list\nnotify:", 1), 3 * streamChunk},
		{"one value in one secret", strings.Replace(good, api(inPiece1), strings.Replace(api(inPiece1), "7d", "8d", 1), 1), 2*streamChunk + 7},
		{"a header value", strings.Replace(good, "grace: 30s", "grace: 31s", 1), 0},
		{"a comment in the header", strings.Replace(good, "version: 1\n", "version: 1 # edited\n", 1), 0},
		{"the file name's directory", good, n}, // see below: another dir
		{"a secret inserted", strings.Replace(good, api(inPiece1), api(inPiece1)+api(90000), 1), streamChunk},
		{"a secret removed", strings.Replace(good, api(inPiece1), "", 1), streamChunk},
		{"two secrets swapped across pieces", strings.Replace(strings.Replace(strings.Replace(good,
			api(3), "@@", 1), api(inPiece1), api(3), 1), "@@", api(inPiece1), 1), streamChunk + 7},
		{"two pieces swapped", swapPieces(good, 0, 1), streamChunk + 7},
		{"a line added to a secret", strings.Replace(good, api(inPiece1), strings.Replace(api(inPiece1), "    interval: 7d\n", "    interval: 7d\n    description: added\n", 1), 1), streamChunk},
		// Refused: each pairs a reused piece with a changed one.
		{"a duplicate id of a reused piece", strings.Replace(good, fmt.Sprintf("id: a/a%05d", n-4), "id: db/p00000", 1), 0},
		{"a duplicate target of a reused piece", strings.Replace(good, fmt.Sprintf("path: a/a%05d.json", n-4), "path: db/p00000.json", 1), 0},
		{"an unknown field in a changed piece", strings.Replace(good, api(inPiece1), strings.Replace(api(inPiece1), "interval:", "intervall:", 1), 1), 0},
		{"an unknown class in a changed piece", strings.Replace(good, "class: custom", "class: nosuch", 1), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := name
			if c.name == "the file name's directory" {
				file = "elsewhere/" + name
				c.shared = 0
			}
			f := reloadAgrees(t, file, []byte(c.text), prev)
			if f == nil {
				require.Zero(t, c.shared)
				return
			}
			require.Equal(t, c.shared, shared(prev, f), "secrets reused")
			// A chain of reloads: the next one reuses this File.
			g := reloadAgrees(t, file, []byte(c.text), f)
			require.Equal(t, len(g.Secrets), shared(f, g))
		})
	}
}

// swapPieces swaps the secrets of pieces a and b (whole pieces of
// streamChunk items) in a bigFile text.
func swapPieces(text string, a, b int) string {
	blk, ok := findSecrets([]byte(text))
	if !ok {
		panic("no list")
	}
	at := func(i int) string {
		end := blk.end
		if (i+1)*streamChunk < len(blk.items) {
			end = blk.items[(i+1)*streamChunk]
		}
		return text[blk.items[i*streamChunk]:end]
	}
	pa, pb := at(a), at(b)
	return text[:blk.items[a*streamChunk]] + pb + pa + text[blk.items[b*streamChunk]+len(pb):]
}

// TestStreamedLoadReuseKeepsPrev: a reload never writes the File it
// reuses from (the daemon keeps serving it until the new one is in force,
// and after it the two share secrets): under -race, the reads beside the
// loads make any write a reported race.
func TestStreamedLoadReuseKeepsPrev(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk))
	good := bigFile(2*streamChunk + 7)
	prev, _, err := parse("policies.yaml", []byte(good), nil)
	require.NoError(t, err)
	before, _, err := parse("policies.yaml", []byte(good), nil)
	require.NoError(t, err)
	for _, text := range []string{good, strings.Replace(good, "notify:", "# x\nnotify:", 1), strings.Replace(good, "grace: 30s", "grace: 31s", 1),
		strings.Replace(good, "db/p00000.json", "db/p00004.json", 1)} {
		read := make(chan bool)
		go func() { read <- reflect.DeepEqual(before, prev) }()
		next, _, _ := parse("policies.yaml", []byte(text), prev)
		require.True(t, <-read, "the previous File is unchanged")
		require.True(t, reflect.DeepEqual(before, prev), "the previous File is unchanged")
		if next != nil {
			// The daemon's next reload reuses the File in force.
			go func() { read <- reflect.DeepEqual(before, prev) }()
			_, _, _ = parse("policies.yaml", []byte(good), next)
			require.True(t, <-read)
		}
	}
}

// FuzzLoadReuse: for a file loaded in pieces and any edit of it, loading
// the edited file reusing the first File gives what a fresh load gives
// (the File, or the errors with their positions). Pieces are 3 secrets,
// so small files have many. `go test` runs the seeds.
func FuzzLoadReuse(f *testing.F) {
	f.Cleanup(SetPieceSizes(0, 3))
	base := bigFile(14)
	f.Add([]byte(base), uint(0), uint(0), []byte(""))
	f.Add([]byte(base), uint(len(base)), uint(0), []byte("# reloaded\n"))
	f.Add([]byte(base), uint(strings.Index(base, "grace: 30s")), uint(10), []byte("grace: 31s"))
	f.Add([]byte(base), uint(strings.Index(base, "interval: 7d")), uint(12), []byte("interval: 9d"))
	i := strings.Index(base, "  - id: a/a00007")
	f.Add([]byte(base), uint(i), uint(0), []byte("  - {id: x/new, class: api_key, rotator: {token: {}}, publish: [{store: local, path: x/new}]}\n"))
	f.Add([]byte(base), uint(i), uint(strings.Index(base[i+1:], "  - ")+1), []byte(""))
	f.Add([]byte(base), uint(i), uint(0), []byte("  - {id: db/p00000, class: api_key, rotator: {token: {}}, publish: [{store: local, path: x/new}]}\n"))
	f.Add([]byte(base), uint(strings.Index(base, "rotator: {token: {length: 40}}")), uint(0), []byte("description: &a x\n    "))
	// Shared documents and management_secret across pieces (attack10).
	across := attackHeader +
		tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + apiWith("k/a", "f/f2") +
		tokenAt("f/f1", "{store: local, path: f1.json}") + tokenAt("f/f2", "{store: v1, path: app, fields: {token: x, key_id: y}}") +
		tokenAt("s/b", "{store: local2, path: ./s.json, fields: {token: u}}") + apiWith("k/b", "k/a") +
		tokenAt("s/c", "{store: v2, path: app/, fields: {token: z}}") + tokenAt("f/f3", "{store: local, path: f3.json}")
	f.Add([]byte(across), uint(strings.Index(across, "token: u")), uint(8), []byte("token: t"))
	f.Add([]byte(across), uint(strings.Index(across, "id: f/f2")), uint(8), []byte("id: f/f9"))
	f.Add([]byte(across), uint(strings.Index(across, ", fields: {token: z}")), uint(20), []byte(""))
	f.Add([]byte(across), uint(strings.Index(across, "  - {id: s/a")), uint(0), []byte(tokenAt("s/d", "{store: local, path: s.json, fields: {token: d}}")))
	// Lists in flow style (flow_test.go).
	for _, flow := range []string{jsonFile(f, 8, true), jsonFile(f, 8, false), yamlFlowFile(9)} {
		f.Add([]byte(flow), uint(0), uint(0), []byte(""))
		f.Add([]byte(flow), uint(strings.Index(flow, "}, ")+1), uint(2), []byte(",{}, "))
		f.Add([]byte(flow), uint(strings.Index(flow, "class")), uint(0), []byte("description: x, "))
	}
	f.Fuzz(func(t *testing.T, data []byte, off, n uint, insert []byte) {
		prev, _, err := parseStreamed("policies.yaml", "/fuzz", data, nil)
		if err != nil {
			return
		}
		o := int(off % uint(len(data)+1))
		e := min(o+int(n%uint(len(data)-o+1)), len(data))
		next := append(append(append([]byte{}, data[:o]...), insert...), data[e:]...)
		// A file that does not load is answered piece by piece with the
		// whole loader's errors (streamedErrors).
		if errs, _, ok := streamedErrors("policies.yaml", "/fuzz", next); ok {
			_, _, werr := parseWhole("policies.yaml", "/fuzz", next)
			if len(errs) == 0 {
				require.NoError(t, werr, "the streamed loader found no error in a file the whole loader refuses")
			} else {
				require.Error(t, werr, "the streamed loader found errors in a file the whole loader takes")
				require.Equal(t, everyError(werr), everyError(errs))
			}
		}
		fresh, fnodes, ferr := parse("policies.yaml", next, nil)
		reused, rnodes, rerr := parse("policies.yaml", next, prev)
		if ferr != nil {
			require.Error(t, rerr, "reusing accepts a file a fresh load refuses")
			require.Equal(t, everyError(ferr), everyError(rerr))
			return
		}
		require.NoError(t, rerr, "reusing refuses a file a fresh load accepts")
		require.True(t, reflect.DeepEqual(fresh, reused), "reusing gives another File")
		require.Equal(t, fnodes, rnodes)
	})
}
