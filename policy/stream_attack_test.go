package policy

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fault campaign on the streamed loader's checks across pieces
// (docs/decisions.md, "Fault campaign on the streamed loader's
// cross-piece checks (attack10)"): files whose secrets, in pieces of one
// or two, share documents, name each other's management key or repeat a
// cron schedule, checked against the whole loader's answer.

// attackHeader has several names and spellings of a few places: local
// and local2 are one directory, v1 and v2 one Vault mount.
const attackHeader = "version: 1\nstores:\n" +
	"  - {name: local, files: {dir: out}}\n" +
	"  - {name: local2, files: {dir: ./out/}}\n" +
	"  - {name: raw, files: {dir: raw, format: raw}}\n" +
	"  - {name: v1, vault: {address: \"https://Vault.example:443/\"}}\n" +
	"  - {name: v2, vault: {address: \"https://vault.example\", mount: /secret/}}\n" +
	"  - {name: aws, awssm: {region: eu-central-1}}\n" +
	"secrets:\n"

// tokenAt is a token secret publishing pub (the inside of a publish
// entry).
func tokenAt(id, pub string) string {
	return fmt.Sprintf("  - {id: %s, class: admin_token, rotator: {token: {}}, publish: [%s]}\n", id, pub)
}

// apiWith is an api_key secret whose management key is the secret
// named.
func apiWith(id, mgmt string) string {
	return fmt.Sprintf("  - {id: %s, class: api_key, rotator: {http_api: {preset: openrouter, management_secret: %s}}, publish: [{store: local, path: %s.json}]}\n",
		id, mgmt, strings.ReplaceAll(id, "/", "_"))
}

// streamAgrees checks the invariant of the streamed loader on data, in
// pieces of one and of two secrets: a File only when the whole loader
// gives the same one, errNoStream whenever the whole loader refuses, and
// streamedErrors, when it answers, the whole loader's errors. It returns
// whether the whole loader takes the file.
func streamAgrees(t *testing.T, data []byte) bool {
	t.Helper()
	const name = "policies.yaml"
	wf, _, werr := parseWhole(name, "/x", data)
	for _, chunk := range []int{1, 2} {
		restore := SetPieceSizes(0, chunk)
		sf, _, serr := parseStreamed(name, "/x", data, nil)
		switch {
		case werr != nil:
			require.ErrorIs(t, serr, errNoStream, "pieces of %d: the streamed loader took a file the whole loader refuses: %v", chunk, werr)
		case serr == nil:
			require.True(t, sameFile(wf, sf), "pieces of %d: the streamed File differs from the whole loader's", chunk)
		default:
			require.ErrorIs(t, serr, errNoStream)
		}
		errs, _, ok := streamedErrors(name, "/x", data)
		if ok {
			if werr == nil {
				require.Empty(t, errs, "pieces of %d: errors in a file the whole loader takes", chunk)
			} else {
				require.NotEmpty(t, errs, "pieces of %d: no error in a file the whole loader refuses: %v", chunk, werr)
				require.Equal(t, everyError(werr), everyError(errs), "pieces of %d", chunk)
			}
		}
		restore()
	}
	return werr == nil
}

// TestStreamedAcrossPiecesAttack: shared documents and management_secret
// across pieces, in the shapes a person may write by mistake; every case
// states whether the whole loader takes it, and the streamed loader
// agrees.
func TestStreamedAcrossPiecesAttack(t *testing.T) {
	filler := tokenAt("f/f1", "{store: local, path: f1.json}") + tokenAt("f/f2", "{store: local, path: f2.json}")
	cases := []struct {
		name    string
		secrets string
		valid   bool
	}{
		{"one field owned in two pieces", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {token: t}}"), false},
		{"one field, the path spelled ./", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local, path: ./s.json, fields: {token: t}}"), false},
		{"one field, a trailing slash", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json/, fields: {token: t}}"), false},
		{"one field, another store name for the directory", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local2, path: d/./s.json, fields: {token: t}}") + tokenAt("s/c", "{store: local2, path: s.json, fields: {token: t}}"), false},
		{"one field, two spellings of one Vault mount", tokenAt("s/a", "{store: v1, path: app, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: v2, path: app/, fields: {token: t}}"), false},
		{"different fields, two spellings of one Vault mount", tokenAt("s/a", "{store: v1, path: app, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: v2, path: app/, fields: {token: u}}"), true},
		{"one field, AWS names differing in case", tokenAt("s/a", "{store: aws, path: app, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: aws, path: App, fields: {token: t}}"), true},
		{"one field, AWS name and ./name", tokenAt("s/a", "{store: aws, path: app, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: aws, path: ./app, fields: {token: t}}"), true},
		{"the key_id field owned in two pieces", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t, key_id: k}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {token: u, key_id: k}}"), false},
		{"one secret's key_id is another's token", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t, key_id: k}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {token: k}}"), false},
		{"whole, then fields in another piece", tokenAt("s/a", "{store: local, path: s.json}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {token: t}}"), false},
		{"fields, then whole in another piece", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local2, path: s.json}"), false},
		{"fields, fields, then whole", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {token: u}}") + tokenAt("s/c", "{store: local, path: s.json}"), false},
		{"empty fields are the whole document", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {}}"), false},
		{"one secret twice into one document", "  - {id: s/a, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: s.json, fields: {token: t}}, {store: local2, path: s.json, fields: {key_id: k}}]}\n" + filler, false},
		{"one secret twice into one document, another between", tokenAt("s/b", "{store: local, path: s.json, fields: {token: u}}") +
			"  - {id: s/a, class: admin_token, rotator: {token: {}}, publish: [{store: local, path: s.json, fields: {token: t}}, {store: local2, path: s.json, fields: {key_id: k}}]}\n" + filler, false},
		{"the metadata field owned", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local, path: s.json, fields: {token: \"rotator.id\\0s/a\"}}"), false},
		{"a field and a path that join alike", tokenAt("s/a", "{store: local, path: s.json, fields: {token: \"x\\0y\"}}") + filler +
			tokenAt("s/b", "{store: local, path: \"s.json\\0x\", fields: {token: y}}"), true},
		{"a duplicate id sharing a document", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/a", "{store: local, path: s.json, fields: {token: u}}"), false},
		{"a raw store's document shared", tokenAt("s/a", "{store: raw, path: s, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: raw, path: s, fields: {token: u}}"), false},
		{"three secrets, different fields, three pieces", tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") + filler +
			tokenAt("s/b", "{store: local2, path: ./s.json, fields: {token: u}}") + filler[:0] + tokenAt("s/c", "{store: local, path: s.json//, fields: {token: v, key_id: w}}"), true},
		{"management_secret names itself", apiWith("k/a", "k/a") + filler, true},
		{"management_secret names a later piece", apiWith("k/a", "f/f2") + filler, true},
		{"management_secret names an earlier piece", filler + apiWith("k/a", "f/f1"), true},
		{"management_secret names no secret", filler + apiWith("k/a", "f/f3"), false},
		{"management_secret names an id in another case", filler + apiWith("k/a", "F/F1"), false},
		{"management_secret names an id with a blank", filler + apiWith("k/a", "'f/f1 '"), false},
		{"management_secret names a database secret", "  - {id: db/p, class: database, rotator: {postgres: {admin_dsn: {env: PG}, role: app}}, publish: [{store: local, path: p.json}]}\n" + filler + apiWith("k/a", "db/p"), true},
		{"management_secret names an api secret naming it back", apiWith("k/a", "k/b") + filler + apiWith("k/b", "k/a"), true},
		{"management_secret names a duplicate id", apiWith("k/a", "f/f1") + filler + tokenAt("f/f1", "{store: local, path: g.json}"), false},
		{"management_secret and a bad id elsewhere", apiWith("k/a", "f/f2") + filler + tokenAt("F/BAD", "{store: local, path: g.json}"), false},
		{"management_secret names a bad id", apiWith("k/a", "F/BAD") + filler + tokenAt("F/BAD", "{store: local, path: g.json}"), false},
		{"management_secret set with management", "  - {id: k/a, class: api_key, rotator: {http_api: {preset: openrouter, management: {env: M}, management_secret: f/f1}}, publish: [{store: local, path: k.json}]}\n" + filler, false},
		{"cron schedules differing by blanks and zones", "  - {id: c/a, class: admin_token, cron: '0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: ca}]}\n" +
			"  - {id: c/b, class: admin_token, cron: ' 0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: cb}]}\n" +
			"  - {id: c/c, class: admin_token, cron: 'CRON_TZ=Asia/Tokyo 0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: cc}]}\n" +
			"  - {id: c/d, class: admin_token, cron: 'TZ=Asia/Tokyo 0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: cd}]}\n", true},
		{"cron schedules, a bad zone after a good one", "  - {id: c/a, class: admin_token, cron: 'CRON_TZ=Asia/Tokyo 0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: ca}]}\n" +
			"  - {id: c/b, class: admin_token, cron: 'CRON_TZ=Asia/Tokio 0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: cb}]}\n" +
			"  - {id: c/c, class: admin_token, cron: 'CRON_TZ=Asia/Tokyo 0 3 * * *', rotator: {token: {}}, publish: [{store: local, path: cc}]}\n", false},
		{"cron schedules, too often, spelled two ways", "  - {id: c/a, class: admin_token, cron: '*/30 * * * *', rotator: {token: {}}, publish: [{store: local, path: ca}]}\n" + filler +
			"  - {id: c/b, class: admin_token, cron: ' */30 * * * *', rotator: {token: {}}, publish: [{store: local, path: cb}]}\n" +
			"  - {id: c/c, class: admin_token, cron: '*/30  * * * *', rotator: {token: {}}, publish: [{store: local, path: cc}]}\n", false},
		{"cron schedules, too often in two pieces", "  - {id: c/a, class: admin_token, cron: '*/30 * * * *', rotator: {token: {}}, publish: [{store: local, path: ca}]}\n" + filler +
			"  - {id: c/b, class: admin_token, cron: '*/30 * * * *', rotator: {token: {}}, publish: [{store: local, path: cb}]}\n" +
			"  - {id: c/c, class: admin_token, cron: '0 */2 * * *', rotator: {token: {}}, publish: [{store: local, path: cc}]}\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.valid, streamAgrees(t, []byte(attackHeader+c.secrets)), "what the whole loader says of the case")
		})
	}
}

// TestStreamedReuseAcrossPiecesAttack: a reload reusing a File whose
// pieces pass the checks across pieces, where the edit makes a reused
// piece's secret collide with, or lose, a secret of a piece decoded
// again, gives a fresh load's answer (the whole loader's).
func TestStreamedReuseAcrossPiecesAttack(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	const name = "policies.yaml"
	good := attackHeader +
		tokenAt("s/a", "{store: local, path: s.json, fields: {token: t}}") +
		apiWith("k/a", "f/f2") +
		tokenAt("f/f1", "{store: local, path: f1.json}") +
		tokenAt("f/f2", "{store: local, path: f2.json}") +
		tokenAt("s/b", "{store: local, path: s.json, fields: {token: u}}") +
		apiWith("k/b", "k/a")
	prev, _, err := parse(name, []byte(good), nil)
	require.NoError(t, err)
	require.NotNil(t, prev.pieces, "loaded in pieces")
	edits := map[string][2]string{
		"the last owner takes the first's field":  {"fields: {token: u}", "fields: {token: t}"},
		"the last owner takes the whole document": {"fields: {token: u}}", "}"},
		"the first owner takes the whole":         {"fields: {token: t}}", "}"},
		"the management key is renamed":           {"id: f/f2,", "id: f/f3,"},
		"the management key names a renamed one":  {"management_secret: k/a}", "management_secret: k/c}"},
		"the api secret named is renamed":         {"id: k/a,", "id: k/c,"},
		"a duplicate of the management key":       {"id: f/f1,", "id: f/f2,"},
		"the shared document's owner is renamed":  {"id: s/a,", "id: s/c,"},
		"the shared document moves to local2":     {"store: local, path: s.json, fields: {token: t}", "store: local2, path: s.json, fields: {token: t}"},
		"the second owner writes another place":   {"store: local, path: s.json, fields: {token: u}", "store: local, path: s2.json, fields: {token: u}"},
		"the key secret itself is removed":        {tokenAt("f/f2", "{store: local, path: f2.json}"), ""},
	}
	for cname, e := range edits {
		t.Run(cname, func(t *testing.T) {
			next := strings.Replace(good, e[0], e[1], 1)
			require.NotEqual(t, good, next)
			f := reloadAgrees(t, name, []byte(next), prev)
			_, _, werr := parseWhole(name, "/x", []byte(next))
			if werr != nil {
				require.Nil(t, f)
				var list ErrorList
				require.True(t, errors.As(werr, &list))
			}
			streamAgrees(t, []byte(next))
		})
	}
}

// randomAcross is a file of n secrets drawn by r that publish into a few
// places under several spellings (attackHeader's stores), often owning
// fields of one document, some of them api_key secrets naming a
// management key among the ids (or not), some with cron schedules; ids
// repeat now and then. Half the files (valid) draw from values the
// validator takes, so that most of them load; the others from mistakes
// too. flow: the list in flow style.
func randomAcross(r *rand.Rand, n int, valid, flow bool) string {
	stores := []string{"local", "local2", "raw", "v1", "v2", "aws"}
	paths := []string{"s.json", "./s.json", "S.json", "s.json/", "x/../s.json", "/s.json", "t.json", "s.json//"}
	docs := []string{"a", "b", "c", "rotator.id", "rotator.x", "a\\0b", "A", ""}
	crons := []string{"'0 3 * * *'", "' 0 3 * * *'", "'CRON_TZ=Asia/Tokyo 0 3 * * *'", "'TZ=Asia/Tokyo 0 3 * * *'", "'*/30 * * * *'", "'TZ=Nowhere/X 0 3 * * *'", "'@every 30m'", "'@weekly'"}
	if valid {
		stores = []string{"local", "local2", "v1", "v2", "aws"}
		paths = []string{"s.json", "./s.json", "s.json/", "t.json", "s.json//", "y/./s.json"}
		docs = []string{"a", "b", "c", "d", "e", "f", "g", "A"}
		crons = []string{"'0 3 * * *'", "' 0 3 * * *'", "'CRON_TZ=Asia/Tokyo 0 3 * * *'", "'TZ=Asia/Tokyo 0 3 * * *'", "'@weekly'"}
	}
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("s/x%d", i)
		if i > 0 && r.Intn(8) == 0 && (!valid || r.Intn(4) == 0) {
			ids[i] = ids[r.Intn(i)]
		}
	}
	items := make([]string, n)
	for i := range n {
		field, class, rot := "token", "admin_token", "{token: {}}"
		if r.Intn(3) == 0 {
			m := []string{ids[r.Intn(n)], ids[i], "s/nosuch", "S/X0", "'" + ids[r.Intn(n)] + " '"}[r.Intn(5)]
			if valid && r.Intn(6) != 0 {
				m = ids[r.Intn(n)]
			}
			field, class, rot = "api_key", "api_key", "{http_api: {preset: openrouter, management_secret: "+m+"}}"
		}
		var pubs []string
		for range 1 + r.Intn(2) {
			st, p := stores[r.Intn(len(stores))], paths[r.Intn(len(paths))]
			if r.Intn(2) == 0 {
				st = "local"
			}
			if r.Intn(3) == 0 {
				p = fmt.Sprintf("u%d.json", i)
			}
			pub := fmt.Sprintf("{store: %s, path: %q", st, p)
			switch r.Intn(4) {
			case 0:
			case 1:
				pub += fmt.Sprintf(", fields: {%s: \"%s\"}", field, docs[r.Intn(len(docs))])
			default:
				pub += fmt.Sprintf(", fields: {%s: \"%s\", key_id: \"%s\"}", field, docs[r.Intn(len(docs))], docs[r.Intn(len(docs))])
			}
			pubs = append(pubs, pub+"}")
		}
		cron := ""
		if r.Intn(4) == 0 {
			cron = ", cron: " + crons[r.Intn(len(crons))]
		}
		items[i] = fmt.Sprintf("{id: %q, class: %s%s, rotator: %s, publish: [%s]}", ids[i], class, cron, rot, strings.Join(pubs, ", "))
	}
	if flow {
		return attackHeader[:len(attackHeader)-len("secrets:\n")] + "secrets: [\n  " + strings.Join(items, ",\n  ") + "]\n"
	}
	return attackHeader + "  - " + strings.Join(items, "\n  - ") + "\n"
}

// TestStreamedAcrossPiecesRandom: the invariant of the streamed loader
// (streamAgrees), and of a reload reusing a File (reloadAgrees), over
// files drawn at random with shared documents, management_secret and
// cron schedules across pieces of one or two secrets. (The campaign ran
// 30,000 files; this keeps a few hundred.)
func TestStreamedAcrossPiecesRandom(t *testing.T) {
	const name = "policies.yaml"
	loaded := 0
	for seed := range int64(600) {
		r := rand.New(rand.NewSource(seed))
		data := []byte(randomAcross(r, 2+r.Intn(5), seed%2 == 0, seed%3 == 0))
		if !streamAgrees(t, data) {
			continue
		}
		loaded++
		// A reload after an edit of one secret, reusing the File.
		restore := SetPieceSizes(0, 1+r.Intn(2))
		prev, _, err := parse(name, data, nil)
		require.NoError(t, err)
		lines := strings.Split(string(data), "\n")
		var items []int
		for i, l := range lines {
			if strings.HasPrefix(l, "  ") {
				items = append(items, i)
			}
		}
		k := items[r.Intn(len(items))]
		for _, e := range [][2]string{{"fields: {", "fields: {key_id: \"c\", "}, {"s/x", "s/y"}, {"fields: {token: \"a\"", "fields: {token: \"b\""}, {"path: \"./s.json\"", "path: \"s.json\""}, {", fields: {", "}, {x: {"}} {
			next := append([]string{}, lines...)
			next[k] = strings.Replace(next[k], e[0], e[1], 1)
			reloadAgrees(t, name, []byte(strings.Join(next, "\n")), prev)
		}
		restore()
	}
	require.Greater(t, loaded, 60, "enough of the files load")
}

// TestCronChecksPerSpelling: the cron checks the pieces of one load
// share are kept per schedule as written: schedules that differ only by
// blanks or a zone prefix, in several pieces, each get their own answer,
// the error of each naming its own schedule (a cache keyed by anything
// less than the text would give one schedule's answer, or its message,
// to another).
func TestCronChecksPerSpelling(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, 1))
	specs := []string{"*/30 * * * *", " */30 * * * *", "*/30  * * * *", "CRON_TZ=Asia/Tokyo */30 * * * *", "CRON_TZ=Asia/Tokyo 0 3 * * *",
		"CRON_TZ=Asia/Tokio 0 3 * * *", "TZ=Asia/Tokyo 0 3 * * *", "0 3 * * *", "0 3 * * * "}
	var b strings.Builder
	b.WriteString(attackHeader)
	for i, s := range specs {
		fmt.Fprintf(&b, "  - {id: c/c%d, class: admin_token, cron: '%s', rotator: {token: {}}, publish: [{store: local, path: c%d}]}\n", i, s, i)
	}
	data := []byte(b.String())
	_, _, werr := parseWhole("policies.yaml", "/x", data)
	var whole ErrorList
	require.ErrorAs(t, werr, &whole)
	errs, _, ok := streamedErrors("policies.yaml", "/x", data)
	require.True(t, ok)
	for _, list := range []ErrorList{whole, errs} {
		bad := map[string]bool{}
		for _, e := range list {
			var i int
			_, err := fmt.Sscanf(e.Field, "secrets[%d].cron", &i)
			require.NoError(t, err, "%v", e)
			require.Contains(t, e.Msg, fmt.Sprintf("%q", specs[i]), "the error of secrets[%d] names its schedule", i)
			bad[specs[i]] = true
		}
		require.Equal(t, map[string]bool{specs[0]: true, specs[1]: true, specs[2]: true, specs[3]: true, specs[5]: true}, bad)
	}
}
