package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Load reads and validates the policies file at path. The error, if any,
// is an ErrorList (or, when the file cannot be read, the read error).
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policies file: %w", err)
	}
	return Parse(path, data)
}

// LoadReusing is Load, given prev, a File loaded before from the same
// path (the one in force, for a daemon's reload), or nil: a large file's
// pieces that have not changed since prev (the same text at the same
// lines, under the same text around them) are taken from prev, which
// then shares those SecretSpecs with the File returned. The File is the
// one Load would return.
func LoadReusing(path string, prev *File) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policies file: %w", err)
	}
	f, _, err := parse(path, data, prev)
	return keepSource(f, path, data), err
}

// minimalFile is what the error for an empty file shows.
const minimalFile = `the file is empty; a minimal policies file is:
    stores:
      - name: local
        files: {dir: .rotator/secrets}
    secrets:
      - id: db/postgres
        class: database
        rotator:
          postgres: {admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}, role: app}
        publish:
          - {store: local, path: db/postgres.json}`

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML parse error into a positioned Error; data is
// the file, to find what the parser does not locate (tabs, bad UTF-8).
func syntaxError(name string, data []byte, err error) *Error {
	msg := err.Error()
	if strings.Contains(msg, "UTF-8") {
		if e := invalidUTF8(name, data); e != nil {
			return e
		}
	}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg := "YAML syntax: " + m[2]
		switch {
		case strings.Contains(m[2], "tab character"), strings.Contains(m[2], "cannot start any token"):
			// The parser names the line where the enclosing block
			// starts, or the one before; the tab is at or below it. A
			// token that cannot start with a tab is on the line named.
			last := line
			if strings.Contains(m[2], "tab character") {
				last = 0
			}
			if l, col, ok := indentTab(data, line, last); ok {
				return &Error{Pos: Position{File: name, Line: l, Column: col},
					Msg: "YAML syntax: a tab character in the indentation: indent with spaces (YAML does not allow tabs there)"}
			}
		case strings.Contains(m[2], "did not find expected key") || strings.Contains(m[2], "mapping values are not allowed"):
			// The parser reports an indentation mistake at the line
			// where the enclosing block starts, not at the misindented
			// line.
			msg += fmt.Sprintf(" (check the indentation of the block that starts at line %d and the lines below it: "+
				"keys of one mapping line up, list items start with \"- \", no tabs)", line)
		}
		return &Error{Pos: Position{File: name, Line: line}, Msg: msg}
	}
	return &Error{Pos: Position{File: name}, Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

// indentTab finds the first tab in the indentation (the leading spaces,
// tabs and list dashes) of a line from line first to line last (0: to the
// end of the file), and returns its line and column.
func indentTab(data []byte, first, last int) (line, col int, ok bool) {
	for i, l := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		if n < first {
			continue
		}
		if last > 0 && n > last {
			break
		}
		for j, c := range l {
			if c == '\t' {
				return n, j + 1, true
			}
			if c != ' ' && c != '-' {
				break
			}
		}
	}
	return 0, 0, false
}

// invalidUTF8 locates the first byte of data that is not UTF-8: its line,
// its column (in characters) and its offset. Nil when data is UTF-8 (or
// UTF-16 with a byte-order mark, which the parser reads).
func invalidUTF8(name string, data []byte) *Error {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return nil
	}
	for off := 0; off < len(data); {
		r, size := utf8.DecodeRune(data[off:])
		if r != utf8.RuneError || size != 1 {
			off += size
			continue
		}
		start := bytes.LastIndexByte(data[:off], '\n') + 1
		line := bytes.Count(data[:off], []byte("\n")) + 1
		col := utf8.RuneCount(data[start:off]) + 1
		// The byte's value is given, never the text around it: it may be
		// part of a secret written by mistake.
		return &Error{Pos: Position{File: name, Line: line, Column: col},
			Msg: fmt.Sprintf("not valid UTF-8: byte 0x%02X at offset %d of the file; save the file as UTF-8", data[off], off)}
	}
	return nil
}

// Parse validates policies read from data; name is the file name used in
// positions, and its directory is the base of relative paths. The error,
// if any, is an ErrorList.
func Parse(name string, data []byte) (*File, error) {
	f, _, err := parse(name, data, nil)
	return keepSource(f, name, data), err
}

// parse is Parse, also returning how many nodes the decoder visited (see
// Budget), for the fuzz test; prev is LoadReusing's.
func parse(name string, data []byte, prev *File) (_ *File, nodes int, _ error) {
	dir := filepath.Dir(name)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if len(data) >= streamMin {
		// A large file is loaded in pieces (stream.go); anything that
		// loader does not take, the whole loader answers.
		if f, nodes, err := parseStreamed(name, dir, data, prev); err == nil {
			return f, nodes, nil
		}
		// A large file that does not load: its errors, found piece by
		// piece, unless only the whole loader can tell.
		if errs, nodes, ok := streamedErrors(name, dir, data); ok && len(errs) > 0 {
			return nil, nodes, errs
		}
	}
	return parseWhole(name, dir, data)
}

// parseWhole is parse with the whole file decoded at once.
func parseWhole(name, dir string, data []byte) (_ *File, nodes int, _ error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, 0, ErrorList{{Pos: Position{File: name}, Msg: minimalFile}}
	case err != nil:
		return nil, 0, ErrorList{syntaxError(name, data, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, 0, ErrorList{{Pos: Position{File: name, Line: next.Line, Column: next.Column},
			Msg: "a second YAML document (---): a policies file holds one; remove it or merge the two"}}
	case !errors.Is(err, io.EOF):
		return nil, 0, ErrorList{syntaxError(name, data, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.DocumentNode || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, 0, ErrorList{{Pos: Position{File: name}, Msg: minimalFile}}
	}

	d := newDecoder(name, dir, len(data))
	f := &File{Path: name, dir: dir}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "expected a mapping with version, defaults, classes, stores, secrets and notify, got %s", describe(root))
		return nil, d.nodes, d.errs.sorted()
	}
	d.structure(root, reflect.ValueOf(f).Elem(), "")
	if d.over != nil {
		// What decoded is partial: validating it would only add noise.
		return nil, d.nodes, ErrorList{d.over}
	}
	v := &validator{d: d, f: f}
	v.validate()
	if len(d.errs) > 0 {
		return nil, d.nodes, d.errs.sorted()
	}
	f.fillDefaults()
	f.Hash = Hash(data)
	return f, d.nodes, nil
}

// Hash is the content hash of a policies file's bytes (SHA-256, hex):
// what File.Hash holds, and what a caller compares to know, without
// parsing, that the file is the one a File was loaded from.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// HashFile is Hash of the file at path, read as a stream (a 14 MB file
// is not held in memory to be hashed).
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Dir returns the directory of the policies file: relative paths in it
// (files stores, Ref files, CA files) are relative to this directory.
func (f *File) Dir() string { return f.dir }

// ResolvePath returns p made absolute against Dir when it is relative.
func (f *File) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.dir, p)
}

// Secret returns the secret with the given id.
func (f *File) Secret(id string) (*SecretSpec, bool) {
	for _, s := range f.Secrets {
		if s.ID == id {
			return s, true
		}
	}
	return nil, false
}

// Store returns the store with the given name.
func (f *File) Store(name string) (*StoreSpec, bool) {
	for _, s := range f.Stores {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}
