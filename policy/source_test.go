package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReusableIsWhatALoadReuses: for a File loaded in pieces and an edit
// of its file that loads, Reusable (reading the text only) counts the
// secrets a load given the File takes from it.
func TestReusableIsWhatALoadReuses(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk))
	n := 3*streamChunk + 7
	good := bigFile(n)
	const name = "policies.yaml"
	prev, _, err := parse(name, []byte(good), nil)
	require.NoError(t, err)
	api := func(i int) string {
		return fmt.Sprintf("  - id: a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {token: {length: 40}}\n    publish: [{store: local, path: a/a%05d.json}]\n", i, i)
	}
	in1 := streamChunk + 3
	for _, c := range []struct{ name, text string }{
		{"unchanged", good},
		{"a comment appended", good + "# reloaded\n"},
		{"a comment as the first line", "# reloaded\n" + good},
		{"a comment at the end of the list", strings.Replace(good, "notify:", "# the end of the list\nnotify:", 1)},
		{"one value in one secret", strings.Replace(good, api(in1), strings.Replace(api(in1), "7d", "8d", 1), 1)},
		{"a header value", strings.Replace(good, "grace: 30s", "grace: 31s", 1)},
		{"a secret inserted", strings.Replace(good, api(in1), api(in1)+api(90000), 1)},
		{"a secret removed", strings.Replace(good, api(in1), "", 1)},
		{"two pieces swapped", swapPieces(good, 0, 1)},
		{"CRLF line ends", strings.ReplaceAll(good, "\n", "\r\n")},
	} {
		t.Run(c.name, func(t *testing.T) {
			next, _, err := parse(name, []byte(c.text), prev)
			require.NoError(t, err)
			require.Equal(t, shared(prev, next), prev.Reusable([]byte(c.text)))
		})
	}
	require.Equal(t, n, prev.Reusable([]byte(good)))
	require.Zero(t, prev.Reusable([]byte("# reloaded\n"+good)), "every line moved")
	whole, _, err := parseWhole(name, prev.Dir(), []byte(good))
	require.NoError(t, err)
	require.Zero(t, whole.Reusable([]byte(good)), "a File loaded whole has no pieces")
}

// TestSourceParsesAgain: a File loaded from a large file keeps its text,
// compressed, and parsing it again gives an equal File; a small file
// keeps none.
func TestSourceParsesAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	text := bigFile(2*streamChunk + 7)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))

	t.Run("large", func(t *testing.T) {
		t.Cleanup(SetPieceSizes(len(text), streamChunk))
		f, err := LoadReusing(path, nil)
		require.NoError(t, err)
		src := f.Source()
		require.NotNil(t, src, "a large file keeps its text")
		require.Less(t, src.Size(), len(text)/4, "compressed")
		g, err := src.Parse()
		require.NoError(t, err)
		require.NotSame(t, f, g)
		require.True(t, reflect.DeepEqual(f, g), "the File parsed again differs")
		require.Equal(t, len(g.Secrets), g.Reusable([]byte(text)), "its piece index too")
		p, err := Parse(path, []byte(text))
		require.NoError(t, err)
		require.NotNil(t, p.Source(), "Parse keeps it too")
	})
	t.Run("small", func(t *testing.T) {
		t.Cleanup(SetPieceSizes(len(text)+1, streamChunk))
		f, err := Load(path)
		require.NoError(t, err)
		require.Nil(t, f.Source())
	})
}
