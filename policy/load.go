package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
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

// syntaxError turns a yaml.v3 parse error into a positioned Error.
func syntaxError(name string, err error) *Error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg := "YAML syntax: " + m[2]
		// yaml.v3 reports an indentation mistake at the line where the
		// enclosing block starts, not at the misindented line.
		if strings.Contains(m[2], "did not find expected key") || strings.Contains(m[2], "mapping values are not allowed") {
			msg += fmt.Sprintf(" (check the indentation of the block that starts at line %d and the lines below it: "+
				"keys of one mapping line up, list items start with \"- \", no tabs)", line)
		}
		return &Error{Pos: Position{File: name, Line: line}, Msg: msg}
	}
	return &Error{Pos: Position{File: name}, Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Parse validates policies read from data; name is the file name used in
// positions, and its directory is the base of relative paths. The error,
// if any, is an ErrorList.
func Parse(name string, data []byte) (*File, error) {
	dir := filepath.Dir(name)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, ErrorList{{Pos: Position{File: name}, Msg: minimalFile}}
	case err != nil:
		return nil, ErrorList{syntaxError(name, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, ErrorList{{Pos: Position{File: name, Line: next.Line, Column: next.Column},
			Msg: "a second YAML document (---): a policies file holds one; remove it or merge the two"}}
	case !errors.Is(err, io.EOF):
		return nil, ErrorList{syntaxError(name, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.DocumentNode || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, ErrorList{{Pos: Position{File: name}, Msg: minimalFile}}
	}

	d := newDecoder(name, dir)
	f := &File{Path: name, dir: dir}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "expected a mapping with version, defaults, classes, stores, secrets and notify, got %s", describe(root))
		return nil, d.errs.sorted()
	}
	d.structure(root, reflect.ValueOf(f).Elem(), "")
	v := &validator{d: d, f: f}
	v.validate()
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	f.fillDefaults()
	return f, nil
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
