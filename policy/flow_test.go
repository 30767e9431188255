package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// jsonFile is a policies file of n secrets written as JSON: indented, or
// on one line. Descriptions hold what the flow scanner must step over:
// brackets, braces, commas, #, quotes, backslashes and non-ASCII letters.
func jsonFile(t testing.TB, n int, indent bool) string {
	secrets := make([]map[string]any, n)
	for i := range n {
		s := map[string]any{"id": fmt.Sprintf("a/a%05d", i), "class": "api_key",
			"rotator": map[string]any{"token": map[string]any{"length": 40}},
			"publish": []any{map[string]any{"store": "local", "path": fmt.Sprintf("a/a%05d.json", i)}}}
		switch i % 3 {
		case 0:
			s["description"] = `brackets ] [ } { , # "quoted" back\slash é`
		case 1:
			s["class"], s["cron"] = "database", "0 3 * * *"
		}
		secrets[i] = s
	}
	doc := map[string]any{"version": 1, "defaults": map[string]any{"grace": "30s"},
		"stores":  []any{map[string]any{"name": "local", "files": map[string]any{"dir": "out"}}},
		"secrets": secrets, "notify": map[string]any{"remind_before": "7d"}}
	var out []byte
	var err error
	if indent {
		out, err = json.MarshalIndent(doc, "", "  ")
	} else {
		out, err = json.Marshal(doc)
	}
	require.NoError(t, err)
	return string(out)
}

// yamlFlowFile is a YAML file whose secrets list is in flow style, with
// comments, quoted scalars of both kinds, items over several lines, two
// items on one line, and a trailing comma.
func yamlFlowFile(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nstores:\n  - name: local\n    files: {dir: out}\nsecrets: [ # the list\n")
	for i := range n {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  {id: t/t%05d, class: admin_token, description: 'it''s ] [ , # {', rotator: {token: {}}, publish: [{store: local, path: t/t%05d}]}, # ] a comment [\n", i, i)
		case 1:
			fmt.Fprintf(&b, "  {id: t/t%05d, class: admin_token,\n    description: \"two\\\" ]\n    lines é\",\n    rotator: {token: {prefix: \"t_\"}},\n    publish: [{store: local, path: t/t%05d}]},\n", i, i)
		case 2:
			fmt.Fprintf(&b, "  {id: t/t%05d, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t%05d}]}, ", i, i)
		default:
			fmt.Fprintf(&b, "{id: t/t%05d, class: database, cron: 0 3 * * *, rotator: {token: {}}, publish: [{store: local, path: t/t%05d}]},\n", i, i)
		}
	}
	b.WriteString("]\nnotify:\n  remind_before: 7d\n")
	return b.String()
}

// TestStreamedLoadFlow: a secrets list in flow style (JSON, indented or on
// one line; YAML flow) is loaded in pieces, and gives the whole loader's
// File, positions included; a reload of it reuses every piece; its
// mistakes are the whole loader's errors.
func TestStreamedLoadFlow(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 3))
	files := map[string]string{
		"JSON indented": jsonFile(t, 20, true),
		"JSON one line": jsonFile(t, 20, false),
		"YAML flow":     yamlFlowFile(21),
	}
	for name, text := range files {
		t.Run(name, func(t *testing.T) {
			data := []byte(text)
			sf, _, err := parseStreamed("policies.yaml", "/x", data, nil)
			require.NoError(t, err, "the pieces take the file")
			wf, _, err := parseWhole("policies.yaml", "/x", data)
			require.NoError(t, err)
			require.Len(t, sf.Secrets, len(wf.Secrets))
			require.True(t, sameFile(wf, sf), "the pieces' File differs from the whole loader's")
			rf, _, err := parseStreamed("policies.yaml", "/x", data, sf)
			require.NoError(t, err)
			require.Equal(t, len(sf.Secrets), shared(sf, rf), "a reload reuses every piece")

			first, last := sf.Secrets[0].ID, sf.Secrets[len(sf.Secrets)-1].ID
			mistakes := map[string]string{
				"unknown class":              strings.Replace(text, "admin_token", "no_such_class", 1),
				"an id used in two pieces":   strings.Replace(text, last, first, 1),
				"a mistake in the last item": strings.Replace(text, last, "BAD/"+last, 1),
			}
			if strings.Contains(text, `"api_key"`) {
				mistakes["unknown class"] = strings.Replace(text, `"api_key"`, `"no_such_class"`, 2)
			}
			for what, bad := range mistakes {
				require.NotEqual(t, text, bad, what)
				_, _, werr := parseWhole("policies.yaml", "/x", []byte(bad))
				require.Error(t, werr, what)
				errs, _, ok := streamedErrors("policies.yaml", "/x", []byte(bad))
				require.True(t, ok, "%s: the pieces answer", what)
				require.Equal(t, werr.Error(), errs.Error(), what)
			}
		})
	}
}

// TestListHiddenInACommentOrScalar: text that looks like the secrets list
// but stands in a comment or a quoted scalar, with the real secrets key
// elsewhere and empty, is not taken as the list: the whole loader refuses
// these files (no secret), and so do the pieces.
func TestListHiddenInACommentOrScalar(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	item := "{id: t/t1, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]}"
	head := "version: 1\nstores:\n  - name: local\n    files: {dir: out}\n  - name: x\n    files:\n      dir: \"out2\n"
	files := map[string]string{
		// The scanner steps over a plain value up to the comma, which
		// here is in a comment.
		"JSON, a comment after a plain value": `{"stores": [{"name": "local", "files": {"dir": "out"}}], "version": 1 #, "secrets": [` + item + "]\n" + `, "secrets": []}` + "\n",
		"a flow list in a quoted scalar":      head + "secrets: [" + item + "]\n\"\nsecrets: []\n",
		"a block list in a quoted scalar":     head + "secrets:\n  - " + item + "\n\"\n\"secrets\":\n",
	}
	for what, text := range files {
		t.Run(what, func(t *testing.T) {
			data := []byte(text)
			_, _, werr := parseWhole("policies.yaml", "/x", data)
			require.Error(t, werr)
			_, _, serr := parseStreamed("policies.yaml", "/x", data, nil)
			require.Error(t, serr, "the pieces take a file the whole loader refuses: %v", werr)
			if errs, _, ok := streamedErrors("policies.yaml", "/x", data); ok {
				require.Equal(t, werr.Error(), errs.Error())
			}
		})
	}
}

// TestFlowListTabAfterPlainScalar: in a block mapping, the YAML parser
// refuses a line of a flow list that starts with a tab after a plain
// scalar ("a tab character in the indentation"); a piece, parsed as a
// document of its own, has no indentation to violate. The pieces leave
// such a file to the whole loader.
func TestFlowListTabAfterPlainScalar(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	data := []byte("stores: [{name: local, files: {dir: out}}]\nsecrets: [{id: t/t1, description: a\n\t, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]},\n" +
		"  {id: t/t2, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t2}]}]\n")
	_, _, werr := parseWhole("policies.yaml", "/x", data)
	require.ErrorContains(t, werr, "tab character")
	_, _, serr := parseStreamed("policies.yaml", "/x", data, nil)
	require.Error(t, serr, "the pieces take a file the whole loader refuses")
	if errs, _, ok := streamedErrors("policies.yaml", "/x", data); ok {
		require.Equal(t, werr.Error(), errs.Error())
	}
	// In a file that is one flow mapping (JSON indented with tabs), the
	// parser takes such a line, and so do the pieces.
	json := []byte("{\"stores\": [{\"name\": \"local\", \"files\": {\"dir\": \"out\"}}],\n\"secrets\": [{id: t/t1, description: a\n\t, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]},\n" +
		"\t{id: t/t2, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t2}]}]}\n")
	wf, _, err := parseWhole("policies.yaml", "/x", json)
	require.NoError(t, err)
	sf, _, err := parseStreamed("policies.yaml", "/x", json, nil)
	require.NoError(t, err)
	require.True(t, sameFile(wf, sf))
}
