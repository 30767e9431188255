package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzLoad: whatever the policies file holds, the loader returns a valid
// File or an ErrorList of positioned errors; it never panics and never
// decodes more than Budget(len(data)) nodes. `make fuzz-short` runs it for a while;
// `go test` runs the seeds.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.yaml")
	require.NoError(f, err)
	seeds = append(seeds, rootPath,
		"../deploy/kubernetes/base/policies.yaml", "../deploy/kubernetes/overlays/prod/policies.yaml")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte(base))
	f.Add([]byte(jsonFile(f, 4, true)))
	f.Add([]byte(jsonFile(f, 4, false)))
	f.Add([]byte(yamlFlowFile(5)))
	f.Add([]byte(laughs(4)))
	f.Add([]byte(laughs(60)))
	f.Add([]byte("defaults:\n  retry: &r {attempts: 5}\nclasses:\n  database: {retry: *r}\n" + base))
	f.Add([]byte("stores:\n  - name: a\n\tfiles: {dir: out}\n"))
	f.Add([]byte("stores:\n  - name: l\xffcal\n"))
	// Found by hand (stream_test.go, flow_test.go): a list in a comment
	// or a quoted scalar, errors a secret gives at a header field, and
	// errors at one place through an alias.
	item := "{id: t/t1, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]}"
	f.Add([]byte(`{"stores": [{"name": "local", "files": {"dir": "out"}}], "version": 1 #, "secrets": [` + item + "]\n" + `, "secrets": []}` + "\n"))
	f.Add([]byte("stores:\n  - name: local\n    files: {dir: out}\n  - name: x\n    files:\n      dir: \"out2\nsecrets: [" + item + "]\n\"\nsecrets: []\n"))
	f.Add([]byte("defaults: {on_timeout: proceed}\nstores: [{name: local, files: {dir: out}}]\nsecrets:\n" +
		"  - {id: a/a, class: admin_token, rotator: {keyring: {max_token_lifetime: 1h}}, checks: [{delay: 2m}], publish: [{store: local, path: a}]}\n" +
		"  - {id: a/b, class: admin_token, rotator: {keyring: {max_token_lifetime: 1h}}, checks: [{delay: 2m}], publish: [{store: local, path: b}]}\n" +
		"  - {id: a/c, class: admin_token, rotator: {keyring: {max_token_lifetime: 1h}}, checks: [{delay: 2m}], publish: [{store: local, path: c}]}\n"))
	f.Add([]byte("stores: [{name: local, files: {dir: out}}]\nsecrets:\n  - " + item + "\n" +
		"  - {id: t/t2, class: api_key, rotator: {http_api: {preset: openrouter, management_secret: &m /t9}}, publish: [{store: local, path: *m}]}\n"))
	// Unicode line ends, a header alias to an anchor the list redefines,
	// a tab starting a line of a flow list after a plain scalar.
	two := "{id: t/t2, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t2}]}"
	f.Add([]byte("stores: [{name: local, files: {dir: out}}]\nsecrets: [\n  {id: t/t1, description: \"a\u2028b\", class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]},\n  " + two + ",\n  " + item + "]\n"))
	f.Add([]byte("defaults:\n  grace: &g 30s\nstores: [{name: local, files: {dir: out}}]\nsecrets:\n  - {id: t/t1, grace: &g 45s, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]}\n  - " + two + "\nnotify:\n  remind_before: *g\n"))
	f.Add([]byte("stores: [{name: local, files: {dir: out}}]\nsecrets: [{id: t/t1, description: a\n\t, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]},\n  " + two + "]\n"))

	// Shared documents and management_secret across pieces (attack10):
	// valid, then a field owned twice and a key that names no secret.
	across := attackHeader +
		tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + apiWith("k/a", "f/f2") +
		tokenAt("f/f1", "{store: local, path: f1.json}") + tokenAt("f/f2", "{store: v1, path: app, fields: {token: x, key_id: y}}") +
		tokenAt("s/b", "{store: local2, path: ./s.json, fields: {token: u}}") + apiWith("k/b", "k/a") +
		tokenAt("s/c", "{store: v2, path: app/, fields: {token: z}}")
	f.Add([]byte(across))
	f.Add([]byte(strings.Replace(across, "fields: {token: u}", "fields: {token: t}", 1)))
	f.Add([]byte(strings.Replace(across, "management_secret: k/a", "management_secret: k/nosuch", 1)))
	// Pieces of 2 secrets, so that what is checked across pieces is
	// checked on small inputs.
	f.Cleanup(SetPieceSizes(streamMin, 2))
	const name = "policies.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		// The streamed loader (stream.go) takes a file only when the whole
		// loader gives the same File.
		if sf, snodes, serr := parseStreamed(name, "/fuzz", data, nil); serr == nil {
			require.LessOrEqual(t, snodes, Budget(len(data))+1)
			wf, _, werr := parseWhole(name, "/fuzz", data)
			require.NoError(t, werr, "the streamed loader took a file the whole loader refuses")
			require.True(t, sameFile(wf, sf), "the streamed loader's File differs")
			// A reload of the same text reusing that File (FuzzLoadReuse
			// edits it) gives the same File.
			rf, _, rerr := parseStreamed(name, "/fuzz", data, sf)
			require.NoError(t, rerr)
			require.True(t, reflect.DeepEqual(sf, rf), "the File reloaded reusing the previous one differs")
			require.Equal(t, len(sf.Secrets), shared(sf, rf), "every piece is reused")
		}
		// A file that does not load is answered piece by piece with the
		// whole loader's errors (streamedErrors).
		if errs, _, ok := streamedErrors(name, "/fuzz", data); ok {
			_, _, werr := parseWhole(name, "/fuzz", data)
			if len(errs) == 0 {
				require.NoError(t, werr, "the streamed loader found no error in a file the whole loader refuses")
			} else {
				require.Error(t, werr, "the streamed loader found errors in a file the whole loader takes")
				require.Equal(t, everyError(werr), everyError(errs))
			}
		}
		file, nodes, err := parse(name, data, nil)
		require.LessOrEqual(t, nodes, Budget(len(data))+1, "the decoder stops at the budget")
		if err != nil {
			require.Nil(t, file)
			var list ErrorList
			require.ErrorAs(t, err, &list)
			require.NotEmpty(t, list)
			for _, e := range list {
				require.Equal(t, name, e.Pos.File, "every error names the file: %v", e)
				require.GreaterOrEqual(t, e.Pos.Line, 0)
				require.GreaterOrEqual(t, e.Pos.Column, 0)
				require.NotEmpty(t, e.Msg)
			}
			return
		}
		require.NotNil(t, file)
		require.NotEmpty(t, file.Secrets)
		for _, s := range file.Secrets {
			require.NotEmpty(t, s.ID)
			require.NotEmpty(t, s.Publish)
			st := file.Settings(s)
			if st.Cron == "" {
				require.GreaterOrEqual(t, st.Interval, MinInterval, "settings of %s", s.ID)
			}
			require.True(t, st.Window == nil || st.Window.TimeZone != "", "settings of %s", s.ID)
		}
	})
}

// everyError is every error of an ErrorList, one a line: ErrorList.Error
// shows the first MaxShown only.
func everyError(err error) string {
	var list ErrorList
	if !errors.As(err, &list) {
		return err.Error()
	}
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
