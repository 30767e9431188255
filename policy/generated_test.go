package policy

import (
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// generator is the random source of the generated-file tests, and
// whether to go on past their fixed count: for A7_SECONDS seconds (then
// from a new seed), else not.
func generator() (*rand.Rand, func() bool) {
	secs, _ := strconv.Atoi(os.Getenv("A7_SECONDS"))
	if secs <= 0 {
		return rand.New(rand.NewSource(7)), func() bool { return false }
	}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	return rand.New(rand.NewSource(time.Now().UnixNano())), func() bool { return time.Now().Before(deadline) }
}

// genScalar is a flow scalar, or text that is not one, made of what trips
// a scanner.
func genScalar(r *rand.Rand) string {
	atoms := []string{"x", "a b", "'q''s ] {'", "\"d\\\" ]\"", "é", "\t", "a#b", "a #c\n", "[", "]", "{", "}", ",", ":", "a:b", "'", "\"", "&a1 v", "*a1", "!!str v", "\n", "\n  ", "30s", "-5s", "ü ]", "# ]\n", "?", "-", "|", ">", "%", "@", "`", "\\", "'\n'", "\"\n]\"", "a'b", "x:'y"}
	n := 1 + r.Intn(3)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(atoms[r.Intn(len(atoms))])
	}
	return b.String()
}

// genItem is a secret as a flow mapping, with its fields in any order,
// maybe a mistake or an anchor, separated in any way.
func genItem(r *rand.Rand, i int) string {
	fields := []string{fmt.Sprintf("id: t/t%d", i%7), "class: admin_token", "rotator: {token: {}}", fmt.Sprintf("publish: [{store: local, path: t/t%d}]", i%5)}
	if r.Intn(3) == 0 {
		fields = append(fields, "description: "+genScalar(r))
	}
	if r.Intn(5) == 0 {
		fields = append(fields, "grace: "+genScalar(r))
	}
	if r.Intn(6) == 0 {
		fields = append(fields, "rotator: {http_api: {preset: openrouter, management_secret: t/t"+fmt.Sprint(r.Intn(9))+"}}")
		fields = fields[:len(fields)-1]
		fields[2] = "rotator: {http_api: {preset: openrouter, management_secret: t/t" + fmt.Sprint(r.Intn(9)) + "}}"
		fields[1] = "class: api_key"
	}
	extras := []string{"checks: [{delay: 2m}]", "on_timeout: proceed", "interval: 1m", "cron: '0 3 * * *'", "bogus: 1",
		"grace: &a1 45s", "window: {days: [mon, mon]}", "retry: {initial: 5m}", "id: T/BAD", "publish: [{store: local, path: ./t/t1}]",
		"publish: [{store: local, path: doc, fields: {token: f" + fmt.Sprint(r.Intn(2)) + "}}]", "publish: [{store: nope, path: x}]", "class: *a1", "description: *a1",
		"rotator: {keyring: {max_token_lifetime: 1h}}", "rotator: &r1 {token: {}}", "rotator: *r1", "id: [x]", "é: 1", "class: database"}
	for k := r.Intn(3); k > 0; k-- {
		e := extras[r.Intn(len(extras))]
		key, _, _ := strings.Cut(e, ":")
		replaced := false
		for j := range fields {
			if strings.HasPrefix(fields[j], key+":") {
				fields[j], replaced = e, true
			}
		}
		if !replaced {
			fields = append(fields, e)
		}
	}
	r.Shuffle(len(fields), func(a, b int) { fields[a], fields[b] = fields[b], fields[a] })
	seps := []string{", ", ",\n  ", ",\t", " , ", ", # c ]\n  "}
	var b strings.Builder
	b.WriteString("{")
	for j, f := range fields {
		if j > 0 {
			b.WriteString(seps[r.Intn(len(seps))])
		}
		b.WriteString(f)
	}
	b.WriteString("}")
	return b.String()
}

// genFile is a policies file of up to 6 secrets: a block list, a YAML
// flow list or a JSON file, with a header and a tail that may hold
// mistakes and anchors.
func genFile(r *rand.Rand) string {
	n := 1 + r.Intn(6)
	heads := []string{"defaults: {on_timeout: proceed, grace: &a1 1h}\nstores: [{name: local, files: {dir: out}}]\n", "classes: {admin_token: {on_timeout: proceed}}\nstores: [{name: local, files: {dir: out}}, {name: l2, files: {dir: ./out}}]\n", "bogus: 1\nstores: [{name: local, files: {dir: out, format: x}}]\n", "# é ü\nstores: [{name: local, files: {dir: out}}]\n", "stores: [{name: local, files: {dir: out}}]\n", "defaults: {grace: &a1 30s}\nstores: [{name: local, files: {dir: out}}]\n", "version: 1\nstores:\n  - name: local\n    files: {dir: \"o ]\"}\n"}
	tails := []string{"notify: {remind_before: -1s}\n", "x: *r1\n", "", "notify: {remind_before: 7d}\n", "notify:\n  remind_before: *a1\n", "# end ]\n"}
	var b strings.Builder
	b.WriteString(heads[r.Intn(len(heads))])
	block := r.Intn(3) == 0
	if r.Intn(4) == 0 {
		var items []string
		for i := 0; i < n; i++ {
			items = append(items, genItem(r, i))
		}
		seps := []string{", ", ",\n\t", ",\n  ", " ,"}
		var j strings.Builder
		for i, it := range items {
			if i > 0 {
				j.WriteString(seps[r.Intn(len(seps))])
			}
			j.WriteString(it)
		}
		keys := []string{`"stores": [{"name": "local", "files": {"dir": "out"}}]`, `"secrets": [` + j.String() + `]`}
		if r.Intn(2) == 0 {
			keys = append(keys, `"notify": {"remind_before": "7d"}`)
		}
		if r.Intn(3) == 0 {
			keys = append(keys, `"éé": 1`)
		}
		r.Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
		sep := []string{", ", ",\n", ",\n\t"}[r.Intn(3)]
		return "{" + strings.Join(keys, sep) + "}\n"
	}
	if block {
		b.WriteString("secrets:\n")
		for i := 0; i < n; i++ {
			b.WriteString("  - " + genItem(r, i) + "\n")
		}
	} else {
		b.WriteString("secrets: [")
		if r.Intn(2) == 0 {
			b.WriteString(" # c [\n ")
		}
		seps := []string{", ", ",\n  ", ",\n", ", # x ] ' \"\n  ", " ,\t"}
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(seps[r.Intn(len(seps))])
			}
			b.WriteString(genItem(r, i))
		}
		if r.Intn(2) == 0 {
			b.WriteString(",")
		}
		b.WriteString("]\n")
	}
	b.WriteString(tails[r.Intn(len(tails))])
	return b.String()
}

// TestStreamedAgreesOnGeneratedFiles: on files built from the pieces
// that trip a scanner (quotes inside plain scalars, comments holding
// brackets, tabs, non-ASCII, anchors and aliases, JSON and YAML flow
// lists and block lists) and from mistakes checked across secrets, the
// streamed loader gives the whole loader's File, and streamedErrors its
// errors (a fixed seed: the same files every run; A7_SECONDS=n runs
// new ones for n seconds).
func TestStreamedAgreesOnGeneratedFiles(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk)) // the chunk changes per file below
	r, more := generator()
	n, streamed, errsOK := 0, 0, 0
	for ; n < 12000 || more(); n++ {
		data := []byte(genFile(r))
		streamChunk = 1 + r.Intn(3)
		wf, _, werr := parseWhole("p.yaml", "/x", data)
		sf, _, serr := parseStreamed("p.yaml", "/x", data, nil)
		if serr == nil {
			streamed++
			if werr != nil || !sameFile(wf, sf) {
				t.Fatalf("chunk %d streamed differs (whole err %v):\n%s", streamChunk, werr, data)
			}
			rf, _, rerr := parseStreamed("p.yaml", "/x", data, sf)
			if rerr != nil || !reflect.DeepEqual(rf, sf) {
				t.Fatalf("reload differs:\n%s", data)
			}
		}
		if errs, _, ok := streamedErrors("p.yaml", "/x", data); ok {
			if len(errs) > 0 {
				errsOK++
			}
			if (len(errs) == 0) != (werr == nil) || (werr != nil && everyError(werr) != everyError(errs)) {
				t.Fatalf("chunk %d errors differ\nwhole: %v\nstream: %v\n%s", streamChunk, werr, errs, data)
			}
		}
	}
	t.Logf("%d files, %d streamed, %d answered with errors", n, streamed, errsOK)
}

// TestStreamedReuseAgreesOnGeneratedFiles: a generated file loaded in
// pieces, edited (text inserted or cut, an item added), loads reusing
// the first File as it loads fresh.
func TestStreamedReuseAgreesOnGeneratedFiles(t *testing.T) {
	t.Cleanup(SetPieceSizes(0, streamChunk)) // the chunk changes per file below
	r, more := generator()
	n, reused := 0, 0
	for n < 200 || more() {
		data := genFile(r)
		streamChunk = 1 + r.Intn(3)
		prev, _, err := parse("p.yaml", []byte(data), nil)
		if err != nil || prev.pieces == nil {
			continue
		}
		n++
		// An edit: an atom inserted at a random place, or an item's text
		// replaced by another's.
		next := data
		switch r.Intn(3) {
		case 0:
			o := r.Intn(len(data) + 1)
			next = data[:o] + genScalar(r) + data[o:]
		case 1:
			i := strings.Index(data, "{id:")
			if i < 0 {
				continue
			}
			next = data[:i] + genItem(r, 9) + ",\n " + data[i:]
		default:
			o := r.Intn(len(data) + 1)
			e := min(len(data), o+r.Intn(20))
			next = data[:o] + data[e:]
		}
		fresh, fn, ferr := parse("p.yaml", []byte(next), nil)
		re, rn, rerr := parse("p.yaml", []byte(next), prev)
		if (ferr == nil) != (rerr == nil) || (ferr != nil && everyError(ferr) != everyError(rerr)) {
			t.Fatalf("reuse errors differ: %v / %v\nprev:\n%s\nnext:\n%s", ferr, rerr, data, next)
		}
		if ferr == nil {
			if !reflect.DeepEqual(fresh, re) || fn != rn {
				t.Fatalf("reuse File differs\nprev:\n%s\nnext:\n%s", data, next)
			}
			if shared(prev, re) > 0 {
				reused++
			}
		}
	}
	t.Logf("%d loads, %d reused a piece", n, reused)
}
