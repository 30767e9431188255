package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseTabsAndEncoding: a tab in the indentation and a byte that is
// not UTF-8 are reported at their line and column.
func TestParseTabsAndEncoding(t *testing.T) {
	t.Parallel()
	const tabMsg = "YAML syntax: a tab character in the indentation: indent with spaces (YAML does not allow tabs there)"
	tests := []struct {
		name string
		data string
		want string
	}{
		{
			name: "tab before a key (the parser names the line above)",
			data: "stores:\n  - name: a\n\tfiles: {dir: out}\n",
			want: "p.yaml:3:1: " + tabMsg,
		},
		{
			name: "tab after spaces",
			data: "defaults:\n  grace: 1m\n \tmonitor: 2m\n",
			want: "p.yaml:3:2: " + tabMsg,
		},
		{
			name: "tab on the first indented line",
			data: "version: 1\n\tdefaults: {}\n",
			want: "p.yaml:2:1: " + tabMsg,
		},
		{
			name: "tab in a block text (the parser names the block's key)",
			data: "secrets:\n  - id: a\n    description: |\n      one\n\t  two\n",
			want: "p.yaml:5:1: " + tabMsg,
		},
		{
			name: "tab before a list item",
			data: "secrets:\n  - id: a\n    publish:\n\t  - {store: local, path: a}\n",
			want: "p.yaml:4:1: " + tabMsg,
		},
		{
			name: "tab after a list dash",
			data: "secrets:\n  - id: a\n    publish:\n      -\t{store: local, path: a}\n      -\t\n",
			want: "p.yaml:4:8: " + tabMsg,
		},
		{
			name: "invalid byte in a value: line, column and offset, not the text",
			data: "stores:\n  - name: l\xffcal\n",
			want: "p.yaml:2:12: not valid UTF-8: byte 0xFF at offset 19 of the file; save the file as UTF-8",
		},
		{
			name: "truncated sequence after multi-byte characters: the column counts characters",
			data: "secrets:\n  - id: a\n    description: \"café ünïcode \xc3\"\n",
			want: "p.yaml:3:32: not valid UTF-8: byte 0xC3 at offset 53 of the file; save the file as UTF-8",
		},
		{
			name: "invalid byte in a comment",
			data: "# h\xe9llo\nversion: 1\n",
			want: "p.yaml:1:4: not valid UTF-8: byte 0xE9 at offset 3 of the file; save the file as UTF-8",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.yaml", []byte(tt.data))
			require.EqualError(t, err, tt.want, "file:\n%s", tt.data)
		})
	}
}

// TestParseNullListItems: a list item with nothing after its dash is
// reported at the dash, not a crash (found by FuzzLoad).
func TestParseNullListItems(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ old, new, want string }{
		{"secrets:\n", "secrets:\n  -\n", "p.yaml:5:4: secrets[0]: has no value: give it one or remove the key"},
		{"stores:\n", "stores:\n  -\n", "p.yaml:2:4: stores[0]: has no value: give it one or remove the key"},
		{"    publish:\n", "    publish:\n      -\n", "p.yaml:12:8: secrets[0].publish[0]: has no value: give it one or remove the key"},
		{"    publish:\n", "    checks: [~]\n    publish:\n", "p.yaml:11:14: secrets[0].checks[0]: has no value: give it one or remove the key"},
		{"secrets:\n", "notify: {webhooks: [null]}\nsecrets:\n", "p.yaml:4:21: notify.webhooks[0]: has no value: give it one or remove the key"},
	} {
		_, err := Parse("p.yaml", []byte(edit(t, tt.old, tt.new)))
		require.EqualError(t, err, tt.want)
	}
}
