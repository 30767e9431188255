package jsonpath

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestString(t *testing.T) {
	t.Parallel()
	doc, err := Decode([]byte(`{"data": {"hash": "abc", "n": 12345678901234567890, "ok": true, "nil": null,
		"items": [{"id": "x"}, {"id": 7}]}}`))
	require.NoError(t, err)
	for _, tc := range []struct{ path, want, err string }{
		{"data.hash", "abc", ""},
		{"$.data.hash", "abc", ""},
		{"data.n", "12345678901234567890", ""},
		{"data.ok", "true", ""},
		{"data.items.1.id", "7", ""},
		{"data.items[0].id", "x", ""},
		{"data.items.2.id", "", "no value"},
		{"data.missing", "", "no value"},
		{"data.nil", "", "null"},
		{"data.items", "", "not a string"},
	} {
		got, err := String(doc, tc.path)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.path)
			continue
		}
		require.NoError(t, err, tc.path)
		require.Equal(t, tc.want, got, tc.path)
	}
}
