package policy

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree into the structs of types.go. It is strict
// (unknown fields, kind mismatches and null values are errors), collects
// every error instead of stopping at the first, and remembers where each
// field path stands so that validation can point at it too.
type decoder struct {
	file string // the file name as given, for positions
	dir  string // the policies file's directory, stored in each Ref
	errs ErrorList
	// pos is where the value of each field path stands; keyPos is where
	// its key stands (absent for list elements).
	pos    map[string]Position
	keyPos map[string]Position
	// bad holds the paths that failed to decode, so validation does not
	// report them a second time as missing.
	bad map[string]bool
	// nodes counts the values and mapping entries decoded so far, each use
	// of an alias counting its whole target again; see MaxNodes.
	nodes int
	// budget is how many nodes the file may decode: MaxNodes plus its
	// size (see Budget). over is set once nodes passed it: decoding
	// stops, and the one error saying so is the loader's answer.
	budget int
	over   *Error
	// alias is the outermost alias being expanded, and aliasPath the field
	// it stands at: where an over-budget error points.
	alias     *yaml.Node
	aliasPath string
}

// MaxNodes bounds the work of decoding one policies file beyond its size:
// the decoder may visit Budget(len(file)) values and mapping entries,
// where every use of an alias (*name) counts the whole anchored value
// again. Nested aliases can make a few kilobytes expand to billions of
// values ("billion laughs"); past the budget the loader stops and reports
// where. Every value and key written out takes at least one byte of the
// file, so a file without aliases never reaches it, whatever its number of
// secrets: the work stays linear in the size of the file.
const MaxNodes = 100_000

// Budget is the number of nodes a file of size bytes may decode.
func Budget(size int) int { return MaxNodes + size }

// count charges one node to the budget and reports whether decoding may go
// on.
func (d *decoder) count(n *yaml.Node, path string) bool {
	if d.over != nil {
		return false
	}
	d.nodes++
	if d.nodes <= d.budget {
		return true
	}
	if a := d.alias; a != nil {
		d.over = Errorf(d.at(a), d.aliasPath,
			"aliases expand to more than %d values here (*%s, anchored at line %d column %d, and the aliases inside it): "+
				"the loader refuses such a file (a few nested aliases can expand to billions of values); write the values out or use fewer nested aliases",
			d.budget, a.Value, a.Alias.Line, a.Alias.Column)
	} else {
		// Not reached without aliases (see MaxNodes); kept so the budget
		// holds whatever the parser gives.
		d.over = Errorf(d.at(n), path, "the file holds more than %d values, more than the loader reads from one policies file", d.budget)
	}
	return false
}

// follow resolves an alias to the node it names, remembering the
// outermost alias being expanded; done ends that expansion.
func (d *decoder) follow(n *yaml.Node, path string) (target *yaml.Node, done func()) {
	done = func() {}
	if n.Kind == yaml.AliasNode && d.alias == nil {
		d.alias, d.aliasPath = n, path
		done = func() { d.alias, d.aliasPath = nil, "" }
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n, done
}

func newDecoder(file, dir string, size int) *decoder {
	return &decoder{
		file:   file,
		dir:    dir,
		budget: Budget(size),
		pos:    map[string]Position{},
		keyPos: map[string]Position{},
		bad:    map[string]bool{},
	}
}

var (
	durationType = reflect.TypeFor[Duration]()
	refType      = reflect.TypeFor[Ref]()
	positionType = reflect.TypeFor[Position]()
)

func (d *decoder) at(n *yaml.Node) Position {
	return Position{File: d.file, Line: n.Line, Column: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, Errorf(d.at(n), path, format, args...))
	d.bad[path] = true
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return strconv.Quote(n.Value)
	}
	return "a YAML " + n.Tag
}

// describeKind names what a node is without quoting a text value: for
// messages where a mapping or a list was expected, since a value in the
// wrong place may be a secret someone meant to put elsewhere.
func describeKind(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" && n.Tag != "!!int" && n.Tag != "!!float" && n.Tag != "!!bool" {
		return "a text value"
	}
	return describe(n)
}

// join appends a mapping key to a field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode stores the value of n, found at path, into v.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n, done := d.follow(n, path)
	defer done()
	if !d.count(n, path) {
		return
	}
	d.pos[path] = d.at(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		d.errorf(n, path, "has no value: give it one or remove the key")
		return
	}
	switch t := v.Type(); {
	case t == durationType:
		d.duration(n, v, path)
		return
	case t == refType:
		d.ref(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "expected a list, got %s", describeKind(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			e := s.Index(i)
			d.decode(c, e, fmt.Sprintf("%s[%d]", path, i))
			if e.Kind() == reflect.Pointer && e.IsNil() {
				// An element that failed to decode (a null: "- " with
				// nothing after it) is reported; an empty one keeps the
				// validator, which skips its fields, from a nil.
				e.Set(reflect.New(e.Type().Elem()))
			}
		}
		v.Set(s)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!timestamp") {
			d.errorf(n, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil || int64(int(i)) != i {
			d.errorf(n, path, "expected a whole number, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errorf(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	default:
		// A type in types.go this decoder does not know: a programming
		// error that the tests catch.
		panic(fmt.Sprintf("policy: cannot decode into %s", v.Type()))
	}
}

// fields maps the yaml names of a struct's fields to their indexes.
func fields(t reflect.Type) (names []string, index map[string]int) {
	index = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		index[name] = i
		names = append(names, name)
	}
	slices.Sort(names)
	return names, index
}

// pairs walks the key/value pairs of a mapping node, reporting keys that
// are not strings or appear twice.
func (d *decoder) pairs(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !d.count(k, path) {
			return
		}
		if k.Kind != yaml.ScalarNode || k.Tag == "!!null" {
			d.errorf(k, path, "expected a name as key, got %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.errorf(k, path, "merge keys (<<) are not supported: write the fields out")
			continue
		}
		if seen[k.Value] {
			d.errorf(k, join(path, k.Value), "appears twice in this mapping: keep one")
			continue
		}
		seen[k.Value] = true
		d.keyPos[join(path, k.Value)] = d.at(k)
		f(k.Value, k, v)
	}
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describeKind(n))
		return
	}
	names, index := fields(v.Type())
	d.pairs(n, path, func(key string, k, val *yaml.Node) {
		i, ok := index[key]
		if !ok {
			d.errorf(k, join(path, key), "unknown field; expected one of %s", strings.Join(names, ", "))
			return
		}
		d.decode(val, v.Field(i), join(path, key))
	})
	if f := v.FieldByName("Pos"); f.IsValid() && f.Type() == positionType {
		f.Set(reflect.ValueOf(d.at(n)))
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describeKind(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	elem := v.Type().Elem()
	d.pairs(n, path, func(key string, _, val *yaml.Node) {
		p := join(path, key)
		e := reflect.New(elem).Elem()
		if elem.Kind() == reflect.String {
			// Values of string maps (connection, tags) are plain text;
			// numbers and booleans are taken as written (port: 5432).
			val, done := d.follow(val, p)
			defer done()
			if !d.count(val, p) {
				return
			}
			d.pos[p] = d.at(val)
			if val.Kind != yaml.ScalarNode || val.Tag == "!!null" {
				d.errorf(val, p, "expected a string, got %s", describe(val))
				return
			}
			e.SetString(val.Value)
		} else {
			d.decode(val, e, p)
		}
		m.SetMapIndex(reflect.ValueOf(key), e)
	})
	v.Set(m)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "%s, got %s", durationHint, describe(n))
		return
	}
	dur, err := ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, path, "%s", err)
		return
	}
	v.Set(reflect.ValueOf(dur))
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// valueNode returns the value of key in mapping n, or n itself.
func (d *decoder) valueNode(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return n
}

// inlineSecret is what a Ref written as a plain value is told.
const inlineSecret = "secrets are not written inline: use {env: NAME} or {file: PATH}"

func (d *decoder) ref(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode {
		// Never quote the value: it may be the secret itself.
		d.errorf(n, path, "%s", inlineSecret)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected {env: NAME} or {file: PATH}, got %s", describe(n))
		return
	}
	var r Ref
	d.structure(n, reflect.ValueOf(&r).Elem(), path)
	if d.bad[join(path, "env")] || d.bad[join(path, "file")] {
		return
	}
	switch {
	case r.Env == "" && r.File == "":
		d.errorf(n, path, "set one of env (an environment variable) or file (a path): {env: NAME} or {file: PATH}")
		return
	case r.Env != "" && r.File != "":
		d.errorf(n, path, "set one of env and file, not both")
		return
	case r.Env != "" && !envNameRE.MatchString(r.Env):
		// Not quoted: a value here may be a secret written by mistake.
		d.errorf(d.valueNode(n, "env"), join(path, "env"), "expected the name of an environment variable (letters, digits and _, not starting with a digit)")
		return
	}
	r.Dir = d.dir
	v.Set(reflect.ValueOf(r))
}
