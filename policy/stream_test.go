package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// bigFile is a policies file of n secrets of several kinds and styles
// (block and flow items, comments and blank lines between them, a block
// scalar with a line that looks like an item, cron schedules with *), with
// keys before and after the secrets list.
func bigFile(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\ndefaults: {grace: 30s, monitor: 0s, check: {interval: 24h}}\nclasses:\n  custom: {interval: 12h}\n")
	b.WriteString("stores:\n  - name: local\n    files: {dir: out}\nsecrets:\n# a comment at the left edge\n")
	for i := range n {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - id: db/p%05d\n    class: database\n    cron: \"0 3 * * *\"\n    rotator:\n      postgres:\n        admin_dsn: {env: PG_DSN}\n        role: app%05d\n    publish:\n      - {store: local, path: db/p%05d.json}\n\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, "  - {id: tok/t%05d, class: admin_token, rotator: {token: {prefix: t_, length: 32}}, publish: [{store: local, path: tok/t%05d.json}]}\n", i, i)
		case 2:
			fmt.Fprintf(&b, "  -   id: c/c%05d\n      class: custom\n      description: |\n        several lines\n        - not an item\n      rotator: {token: {}}\n      publish:\n        - store: local\n          path: c/c%05d\n    # an indented comment\n", i, i)
		default:
			fmt.Fprintf(&b, "  - id: a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {token: {length: 40}}\n    publish: [{store: local, path: a/a%05d.json}]\n", i, i)
		}
	}
	b.WriteString("notify:\n  remind_before: 7d\n")
	return b.String()
}

// TestStreamedLoadIsTheWholeLoad: a file the streamed loader takes gives
// the File the whole loader gives, with the same positions.
func TestStreamedLoadIsTheWholeLoad(t *testing.T) {
	data := []byte(bigFile(2*streamChunk + 7))
	const name = "policies.yaml"
	dir := t.TempDir()
	streamed, _, err := parseStreamed(name, dir, data, nil)
	require.NoError(t, err, "the streamed loader takes this file")
	whole, _, err := parseWhole(name, dir, data)
	require.NoError(t, err)
	require.Len(t, streamed.Secrets, 2*streamChunk+7)
	require.True(t, sameFile(whole, streamed), "the streamed File differs from the whole loader's")
	require.Equal(t, 12, streamed.Secrets[1].Pos.Line-streamed.Secrets[0].Pos.Line+2, "positions are the file's lines")
}

// TestStreamedLoadGivesUp: what only the whole list can tell, or what the
// streamed loader does not handle, is answered by the whole loader, with
// its positioned errors.
func TestStreamedLoadGivesUp(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk))
	n := 2*streamChunk + 3
	good := bigFile(n)
	last := 2*streamChunk - 1 // an api_key secret (i % 4 == 3) in the second piece
	cases := map[string]string{
		// The last secret takes the id of the first, in another piece.
		"duplicate id across pieces": strings.Replace(good, fmt.Sprintf("id: a/a%05d", last), "id: db/p00000", 1),
		// The last secret publishes where the first does.
		"duplicate target across pieces": strings.Replace(good, fmt.Sprintf("path: a/a%05d.json", last), "path: db/p00000.json", 1),
		"unknown field":                  strings.Replace(good, "    interval: 7d\n", "    intervall: 7d\n", 1),
		"alias to another piece":         strings.Replace(strings.Replace(good, "rotator: {token: {length: 40}}", "rotator: &r {token: {length: 40}}", 1), fmt.Sprintf("a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {token: {length: 40}}", last), fmt.Sprintf("a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: *r", last), 1),
		// Two secrets of two pieces own one field of a shared document
		// (owning different ones is valid and taken:
		// TestStreamedLoadAcrossPieces).
		"shared document field across pieces": strings.Replace(strings.Replace(good,
			"publish: [{store: local, path: a/a00003.json}]", "publish: [{store: local, path: shared.json, fields: {token: app_token}}]", 1),
			fmt.Sprintf("publish: [{store: local, path: a/a%05d.json}]", last), "publish: [{store: local, path: shared.json, fields: {token: app_token}}]", 1),
		"second secrets key": good + "secrets:\n  - {id: x/y, class: api_key, rotator: {token: {}}, publish: [{store: local, path: x}]}\n",
		"CRLF":               strings.ReplaceAll(good, "\n", "\r\n"),
		"tab in an item":     strings.Replace(good, "    interval: 7d\n", "\tinterval: 7d\n", 1),
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			require.True(t, good != text, "the case changes the file")
			_, _, serr := parseStreamed("policies.yaml", "/x", []byte(text), nil)
			require.ErrorIs(t, serr, errNoStream)
			f, _, err := parse("policies.yaml", []byte(text), nil)
			wf, _, werr := parseWhole("policies.yaml", "/x", []byte(text))
			if werr != nil {
				require.Nil(t, f)
				require.Equal(t, werr.Error(), err.Error(), "the whole loader's errors")
				return
			}
			require.NoError(t, err)
			require.Equal(t, len(wf.Secrets), len(f.Secrets))
		})
	}
}

// TestStreamedLoadReferenceFile: the reference policies.yaml loads the
// same both ways (when its layout is one the streamed loader takes).
func TestStreamedLoadReferenceFile(t *testing.T) {
	data, err := os.ReadFile(rootPath)
	require.NoError(t, err)
	whole, _, err := parseWhole(rootPath, "/x", data)
	require.NoError(t, err)
	streamed, _, err := parseStreamed(rootPath, "/x", data, nil)
	if err != nil {
		require.ErrorIs(t, err, errNoStream)
		t.Logf("the reference file is loaded whole: %v", err)
		return
	}
	require.True(t, sameFile(whole, streamed))
}

// TestStreamedErrorsAreTheWholeLoaders: a large file that does not load is
// answered piece by piece with the errors the whole loader gives, those
// found across pieces included, in its order and at its positions.
func TestStreamedErrorsAreTheWholeLoaders(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 3))
	good := bigFile(40)
	// mgmt makes secret a/a<i> an http_api secret whose management key is
	// the secret named.
	mgmt := func(text string, i int, names string) string {
		return strings.Replace(text, fmt.Sprintf("a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {token: {length: 40}}", i),
			fmt.Sprintf("a/a%05d # a comment\n    class: api_key\n    interval: 7d\n    rotator: {http_api: {preset: openrouter, management_secret: %s}}", i, names), 1)
	}
	fields := func(text string, i int, doc, field string) string {
		return strings.Replace(text, fmt.Sprintf("publish: [{store: local, path: a/a%05d.json}]", i),
			fmt.Sprintf("publish: [{store: local, path: %s, fields: {token: %s}}]", doc, field), 1)
	}
	cases := map[string]string{
		"unknown field":                                  strings.Replace(good, "    interval: 7d\n", "    intervall: 7d\n", 1),
		"errors in several pieces":                       strings.Replace(strings.Replace(good, "class: api_key", "class: nosuch", 2), "length: 32", "length: -4", 3),
		"duplicate id across pieces":                     strings.Replace(good, "id: a/a00035", "id: db/p00000", 1),
		"duplicate id three times":                       strings.Replace(strings.Replace(good, "id: a/a00035", "id: db/p00004", 1), "id: a/a00019", "id: db/p00004", 1),
		"duplicate target across pieces":                 strings.Replace(good, "path: a/a00035.json", "path: db/p00000.json", 1),
		"two spellings of one target":                    strings.Replace(good, "path: a/a00035.json", "path: ./db/p00000.json", 1),
		"one field owned twice":                          fields(fields(good, 3, "shared.json", "password"), 35, "shared.json", "password"),
		"a whole document and fields":                    fields(good, 35, "db/p00000.json", "password"),
		"management secret unknown":                      mgmt(good, 35, "api/nosuch"),
		"management secret later, and an error":          strings.Replace(mgmt(good, 3, "a/a00039"), "class: database", "class: nosuch", 1),
		"management secret unknown twice, with a bad id": strings.Replace(mgmt(mgmt(good, 3, "api/gone"), 39, "api/gone"), "id: a/a00011", "id: A/BAD", 1),
		"a bad cron schedule in several pieces":          strings.Replace(good, "cron: \"0 3 * * *\"", "cron: \"*/30 * * * *\"", 3),
		"header: unknown store kind":                     strings.Replace(good, "    files: {dir: out}\n", "    filez: {dir: out}\n", 1),
		"header: bad default and a secret's mistake":     strings.Replace(strings.Replace(good, "grace: 30s", "grace: -3s", 1), "class: custom", "class: nosuch", 1),
		"header: bad notify":                             strings.Replace(good, "remind_before: 7d", "remind_before: soon", 1),
		"unknown store":                                  strings.Replace(good, "{store: local, path: a/a00007.json}", "{store: nowhere, path: a/a00007.json}", 1),
		"unknown top-level key":                          "bogus: 1\n" + strings.Replace(good, "class: custom", "class: nosuch", 1),
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			require.NotEqual(t, good, text, "the case changes the file")
			_, _, werr := parseWhole("policies.yaml", "/x", []byte(text))
			require.Error(t, werr, "the case is an invalid file")
			errs, _, ok := streamedErrors("policies.yaml", "/x", []byte(text))
			require.True(t, ok, "the streamed loader answers")
			require.NotEmpty(t, errs)
			require.Equal(t, werr.Error(), errs.Error())
			// What Load answers (parse: the directory of the file).
			dir, err := filepath.Abs(".")
			require.NoError(t, err)
			_, _, werr = parseWhole("policies.yaml", dir, []byte(text))
			_, _, err = parse("policies.yaml", []byte(text), nil)
			require.Equal(t, werr.Error(), err.Error())
		})
	}
	t.Run("valid across pieces", func(t *testing.T) {
		// Valid: the management secret is in a later piece; two
		// secrets own different fields of one document.
		text := fields(fields(mgmt(good, 3, "a/a00039"), 7, "shared.json", "password"), 35, "shared.json", "other")
		_, _, werr := parseWhole("policies.yaml", "/x", []byte(text))
		require.NoError(t, werr)
		errs, _, ok := streamedErrors("policies.yaml", "/x", []byte(text))
		require.True(t, ok)
		require.Empty(t, errs)
	})
	t.Run("the testdata", func(t *testing.T) {
		paths, err := filepath.Glob("testdata/*/*.yaml")
		require.NoError(t, err)
		answered := 0
		for _, p := range paths {
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			errs, _, ok := streamedErrors(p, "/x", data)
			if !ok {
				continue
			}
			answered++
			_, _, werr := parseWhole(p, "/x", data)
			if werr == nil {
				require.Empty(t, errs, p)
				continue
			}
			require.Equal(t, werr.Error(), errs.Error(), p)
		}
		require.NotZero(t, answered)
		t.Logf("the streamed loader answered %d of %d files", answered, len(paths))
	})
}

// TestStreamedErrorsOnTheHeaderForEachSecret: an error a secret causes
// at a field of the header (a keyring secret and on_timeout: proceed from
// the defaults or its class) is given once per secret by the whole
// loader, so by the pieces too, not only by the first piece.
func TestStreamedErrorsOnTheHeaderForEachSecret(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	item := func(id string) string {
		return "  - id: " + id + "\n    class: admin_token\n    rotator: {keyring: {max_token_lifetime: 1h}}\n" +
			"    checks: [{delay: 2m}]\n    publish: [{store: local, path: " + id + "}]\n"
	}
	for _, header := range []string{
		"defaults: {on_timeout: proceed}\n",
		"classes: {admin_token: {on_timeout: proceed}}\n",
	} {
		data := []byte(header + "stores:\n  - name: local\n    files: {dir: out}\nsecrets:\n" + item("auth/a") + item("auth/b") + item("auth/c"))
		_, _, werr := parseWhole("policies.yaml", "/x", data)
		require.Error(t, werr)
		require.Contains(t, werr.Error(), "(auth/c)")
		errs, _, ok := streamedErrors("policies.yaml", "/x", data)
		require.True(t, ok, "the pieces answer")
		require.Equal(t, werr.Error(), errs.Error())
	}
}

// TestStreamedErrorsKeepTheOrderAtOnePlace: errors at one place (an
// alias repeats its anchor's position) come in the whole loader's order,
// a management_secret that names no secret included, though the pieces
// know that only once every piece is read.
func TestStreamedErrorsKeepTheOrderAtOnePlace(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	data := []byte("stores: [{name: local, files: {dir: out}}]\nsecrets:\n" +
		"  - {id: t/t1, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: t/t1}]}\n" +
		"  - {id: t/t2, class: api_key, rotator: {http_api: {preset: openrouter, management_secret: &m /t9}}, publish: [{store: local, path: *m}]}\n")
	_, _, werr := parseWhole("policies.yaml", "/x", data)
	require.Error(t, werr)
	require.Contains(t, werr.Error(), `unknown secret "/t9"`)
	require.Contains(t, werr.Error(), `must be relative to the store`)
	errs, _, ok := streamedErrors("policies.yaml", "/x", data)
	require.True(t, ok, "the pieces answer")
	require.Equal(t, werr.Error(), errs.Error())
}

// TestStreamedUnicodeLineBreaks: the YAML parser counts NEL, LS and PS
// (U+0085, U+2028, U+2029) as line ends where the pieces count only \n;
// a file holding one is the whole loader's, so the positions of the
// secrets after it are the parser's.
func TestStreamedUnicodeLineBreaks(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	for _, br := range []string{"\u0085", "\u2028", "\u2029"} {
		item := func(i int, extra string) string {
			return fmt.Sprintf("{id: t/t%d, class: admin_token, %srotator: {token: {}}, publish: [{store: local, path: t/t%d}]}", i, extra, i)
		}
		good := "stores: [{name: local, files: {dir: out}}]\nsecrets: [\n  " + item(1, `description: "a`+br+`b", `) + ",\n  " + item(2, "") + "]\n"
		whole, _, err := parseWhole("policies.yaml", "/x", []byte(good))
		require.NoError(t, err)
		if sf, _, err := parseStreamed("policies.yaml", "/x", []byte(good), nil); err == nil {
			require.Equal(t, whole.Secrets[1].Rotator.Pos, sf.Secrets[1].Rotator.Pos, "%q", br)
			require.True(t, sameFile(whole, sf), "%q", br)
		}
		bad := strings.Replace(good, "{id: t/t2,", "{id: t/t2, bogus: 1,", 1)
		_, _, werr := parseWhole("policies.yaml", "/x", []byte(bad))
		require.Error(t, werr)
		if errs, _, ok := streamedErrors("policies.yaml", "/x", []byte(bad)); ok {
			require.Equal(t, werr.Error(), errs.Error(), "%q", br)
		}
	}
}

// TestStreamedAnchorRedefinedInTheList: an alias after the list names
// the last anchor of that name before it, which may be in the list; the
// header parsed without the list would name an earlier one. Such a file
// is the whole loader's.
func TestStreamedAnchorRedefinedInTheList(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	item := func(i int, extra string) string {
		return fmt.Sprintf("{id: t/t%d, class: admin_token, %srotator: {token: {}}, publish: [{store: local, path: t/t%d}]}", i, extra, i)
	}
	head := "defaults:\n  grace: &g 30s\nstores: [{name: local, files: {dir: out}}]\n"
	for what, text := range map[string]string{
		"block":         head + "secrets:\n  - " + item(1, "grace: &g 45s, ") + "\n  - " + item(2, "") + "\nnotify:\n  remind_before: *g\n",
		"flow":          head + "secrets: [" + item(1, "grace: &g 45s, ") + ", " + item(2, "") + "]\nnotify:\n  remind_before: *g\n",
		"flow, mistake": head + "secrets: [" + item(1, "grace: &g -5s, ") + ", " + item(2, "") + "]\nnotify:\n  remind_before: *g\n",
	} {
		data := []byte(text)
		whole, _, werr := parseWhole("policies.yaml", "/x", data)
		if sf, _, err := parseStreamed("policies.yaml", "/x", data, nil); err == nil {
			require.NoError(t, werr, what)
			require.Equal(t, whole.Notify.RemindBefore, sf.Notify.RemindBefore, what)
			require.True(t, sameFile(whole, sf), what)
		}
		if errs, _, ok := streamedErrors("policies.yaml", "/x", data); ok && len(errs) > 0 {
			require.Error(t, werr, what)
			require.Equal(t, werr.Error(), errs.Error(), what)
		}
	}
}
