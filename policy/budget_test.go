package policy

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// laughs is a "billion laughs" policies file: n secrets, each with n
// checks, each with n URLs, written as aliases, so a few kilobytes stand
// for n³ values.
func laughs(n int) string {
	var b strings.Builder
	b.WriteString("stores: [{name: local, files: {dir: out}}]\nsecrets:\n")
	b.WriteString("  - &s {id: a, class: api_key, rotator: {token: {}}, publish: [{store: local, path: a}],\n")
	b.WriteString("      checks: [&c {http: {urls: [&u \"http://client.example/v\"" + strings.Repeat(", *u", n-1) + "]}}" +
		strings.Repeat(", *c", n-1) + "]}\n")
	for range n - 1 {
		b.WriteString("  - *s\n")
	}
	return b.String()
}

// TestParseAliasBudget: a small file whose aliases expand to a billion
// values is refused with an error at the alias, without decoding them
// all (before the budget, such a file took over 4 GB).
func TestParseAliasBudget(t *testing.T) {
	data := laughs(1000)
	require.Less(t, len(data), 16<<10, "the file is small")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := Parse("p.yaml", []byte(data))
	runtime.ReadMemStats(&after)
	require.Nil(t, f)
	var list ErrorList
	require.ErrorAs(t, err, &list)
	require.Len(t, list, 1, "one error, not one per expanded value: %v", err)
	e := list[0]
	require.Equal(t, 4, e.Pos.Line, "the error points at an alias use in the checks list: %v", e)
	require.Regexp(t, `^secrets\[0\]\.checks\[\d+\]$`, e.Field)
	require.Contains(t, e.Msg, fmt.Sprintf("aliases expand to more than %d values here (*c, anchored at line 4 column 16", Budget(len(data))))
	require.Contains(t, e.Msg, "write the values out or use fewer nested aliases")
	t.Logf("allocated %d MB", (after.TotalAlloc-before.TotalAlloc)>>20)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(256<<20), "memory spent on the refused file")

	// Within the budget, aliases still work: 10 secrets × 10 checks × 10 URLs.
	_, err = Parse("p.yaml", []byte(laughs(10)))
	require.Error(t, err, "ten secrets with one id")
	require.NotContains(t, err.Error(), "aliases expand")
	require.Contains(t, err.Error(), `id "a" is already used`)
}

// TestParseNodeBudgetWithoutAliases: the budget grows with the file, so
// a file without aliases is never refused for its size: 10,000 secrets
// (about twenty values each, twice MaxNodes) load.
func TestParseNodeBudgetWithoutAliases(t *testing.T) {
	t.Parallel()
	const n = 10_000
	var b strings.Builder
	b.WriteString("stores: [{name: local, files: {dir: out}}]\nsecrets:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: tok/t%06d, class: admin_token, rotator: {token: {prefix: t_, length: 32}}, publish: [{store: local, path: t%06d.json}]}\n", i, i)
	}
	data := []byte(b.String())
	f, nodes, err := parse("p.yaml", data, nil)
	require.NoError(t, err)
	require.Len(t, f.Secrets, n)
	require.Greater(t, nodes, MaxNodes, "the file holds more values than MaxNodes")
	require.LessOrEqual(t, nodes, len(data), "a value written out takes at least a byte")
}

// HashFile hashes the file as Hash hashes its bytes, and File.Hash is it.
func TestHashFile(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/p.yaml"
	require.NoError(t, os.WriteFile(path, []byte(base), 0o600))
	h, err := HashFile(path)
	require.NoError(t, err)
	require.Equal(t, Hash([]byte(base)), h)
	f, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, h, f.Hash)
	require.NotEqual(t, h, Hash([]byte(base+"# one comment more\n")))
}
