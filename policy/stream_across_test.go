package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// acrossFile is bigFile(n) (n > 2*streamChunk+5: three pieces) where
// three token secrets, one in each piece, own fields of one shared
// document, and two api_key secrets take their management key from a
// secret of another piece, one before and one after them.
func acrossFile(n int) string {
	text := bigFile(n)
	tok := func(i int) string { return fmt.Sprintf("publish: [{store: local, path: tok/t%05d.json}]", i) }
	for k, i := range []int{1, streamChunk + 1, 2*streamChunk + 1} {
		text = strings.Replace(text, tok(i), fmt.Sprintf("publish: [{store: local, path: shared.json, fields: {token: t%d}}]", k), 1)
	}
	api := func(i int) string {
		return fmt.Sprintf("a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {token: {length: 40}}", i)
	}
	mgmt := func(i int, id string) string {
		return strings.Replace(api(i), "{token: {length: 40}}", "{http_api: {preset: openrouter, management_secret: "+id+"}}", 1)
	}
	text = strings.Replace(text, api(3), mgmt(3, fmt.Sprintf("tok/t%05d", 2*streamChunk+5)), 1)
	text = strings.Replace(text, api(2*streamChunk+3), mgmt(2*streamChunk+3, "tok/t00005"), 1)
	return text
}

// TestStreamedLoadAcrossPieces: secrets of several pieces that own fields
// of one shared document, and management_secret naming a secret of
// another piece, are taken by the streamed loader (which gave them to
// the whole loader: its memory, and two loads more), and the File is the
// whole loader's.
func TestStreamedLoadAcrossPieces(t *testing.T) {
	n := 2*streamChunk + 7
	data := []byte(acrossFile(n))
	require.Equal(t, 3, strings.Count(string(data), "path: shared.json"))
	require.Equal(t, 2, strings.Count(string(data), "management_secret:"))
	const name = "policies.yaml"
	dir := t.TempDir()
	whole, _, err := parseWhole(name, dir, data)
	require.NoError(t, err, "the file is valid")
	streamed, _, err := parseStreamed(name, dir, data, nil)
	require.NoError(t, err, "the streamed loader takes this file")
	require.Len(t, streamed.Secrets, n)
	require.True(t, sameFile(whole, streamed), "the streamed File differs from the whole loader's")
}

// TestStreamedLoadAcrossPiecesGivesUp: what the whole loader refuses
// across pieces, in shared documents and management_secret, the streamed
// loader gives up on, and the errors are the whole loader's; reusing a
// File whose pieces pass these checks only with a piece that changed
// gives the answer of a fresh load.
func TestStreamedLoadAcrossPiecesGivesUp(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk))
	n := 2*streamChunk + 7
	good := acrossFile(n)
	const name = "policies.yaml"
	prev, _, err := parse(name, []byte(good), nil)
	require.NoError(t, err)
	require.NotNil(t, prev.pieces, "loaded in pieces")
	last := fmt.Sprintf("fields: {token: t%d}", 2)
	cases := map[string]string{
		// The third piece's secret owns the first's field.
		"a field owned twice across pieces": strings.Replace(good, last, "fields: {token: t0}", 1),
		// The third piece's secret owns the whole shared document.
		"a whole document and fields of it": strings.Replace(good, last+"}", "}", 1),
		// The secret the first piece's management_secret names is gone
		// (its id changed) from the third piece.
		"management_secret names no secret": strings.Replace(good, fmt.Sprintf("id: tok/t%05d,", 2*streamChunk+5), "id: tok/renamed,", 1),
		// The secret the third piece's names is gone from the first
		// (reused pieces: the second and the third).
		"management_secret names a secret removed": strings.Replace(good, "id: tok/t00005,", "id: tok/renamed,", 1),
	}
	for cname, text := range cases {
		t.Run(cname, func(t *testing.T) {
			require.NotEqual(t, good, text, "the case changes the file")
			_, _, serr := parseStreamed(name, "/x", []byte(text), nil)
			require.ErrorIs(t, serr, errNoStream)
			_, _, werr := parseWhole(name, "/x", []byte(text))
			require.Error(t, werr, "the whole loader refuses it")
			_, _, err := parse(name, []byte(text), nil)
			require.Equal(t, werr.Error(), err.Error(), "the whole loader's errors")
			require.Nil(t, reloadAgrees(t, name, []byte(text), prev))
		})
	}
}
