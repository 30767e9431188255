package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const (
	schemaPath = "../policies.schema.json"
	rootPath   = "../policies.yaml"
)

// compileSchema compiles policies.schema.json as draft 2020-12.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile(schemaPath)
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	require.NoError(t, c.AddResource("policies.schema.json", bytes.NewReader(data)))
	s, err := c.Compile("policies.schema.json")
	require.NoError(t, err)
	return s
}

// rawSchema is the schema as plain JSON values.
func rawSchema(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(schemaPath)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	return m
}

// yamlToJSON converts the first YAML document in data to the JSON value the
// schema sees. Scalars keep the type YAML gives them, except timestamps,
// which stay the text written (as the loader reads them).
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	var conv func(n *yaml.Node) any
	conv = func(n *yaml.Node) any {
		for n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			m := map[string]any{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				m[n.Content[i].Value] = conv(n.Content[i+1])
			}
			return m
		case yaml.SequenceNode:
			s := []any{}
			for _, c := range n.Content {
				s = append(s, conv(c))
			}
			return s
		}
		switch n.Tag {
		case "!!null":
			return nil
		case "!!bool":
			return strings.EqualFold(n.Value, "true")
		case "!!int", "!!float":
			f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
			if err != nil {
				i, _ := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
				f = float64(i)
			}
			return f
		}
		return n.Value
	}
	// Round-trip through JSON so the validator sees what it expects: the
	// values encoding/json decodes, with json.Number for numbers.
	b, err := json.Marshal(conv(doc.Content[0]))
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

// TestSchemaMatchesTypes walks the structs of types.go beside the schema:
// every yaml field is a schema property and every property a yaml field,
// with matching JSON types.
func TestSchemaMatchesTypes(t *testing.T) {
	t.Parallel()
	root := rawSchema(t)
	defs := root["$defs"].(map[string]any)
	resolve := func(s map[string]any) map[string]any {
		for {
			ref, ok := s["$ref"].(string)
			if !ok {
				return s
			}
			s = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
	}
	hasType := func(s map[string]any, want string) bool {
		switch ty := s["type"].(type) {
		case string:
			return ty == want
		case []any:
			return slices.Contains(ty, any(want))
		}
		return false
	}
	var walk func(typ reflect.Type, s map[string]any, path string)
	walk = func(typ reflect.Type, s map[string]any, path string) {
		s = resolve(s)
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch {
		case typ == durationType:
			require.Equal(t, defs["duration"], s, "%s: a Duration is #/$defs/duration", path)
			return
		case typ == refType:
			require.Equal(t, defs["ref"], s, "%s: a Ref is #/$defs/ref", path)
		}
		switch typ.Kind() {
		case reflect.Struct:
			require.True(t, hasType(s, "object"), "%s: type object", path)
			require.Equal(t, false, s["additionalProperties"], "%s: additionalProperties false", path)
			names, index := fields(typ)
			props, _ := s["properties"].(map[string]any)
			require.ElementsMatch(t, names, slices.Collect(mapKeys(props)), "%s (%s): yaml fields vs schema properties", path, typ.Name())
			for _, name := range names {
				walk(typ.Field(index[name]).Type, props[name].(map[string]any), join(path, name))
			}
		case reflect.Slice:
			require.True(t, hasType(s, "array"), "%s: type array", path)
			walk(typ.Elem(), s["items"].(map[string]any), path+"[]")
		case reflect.Map:
			require.True(t, hasType(s, "object"), "%s: type object", path)
			ap, ok := s["additionalProperties"].(map[string]any)
			require.True(t, ok, "%s: a map's values are described by additionalProperties", path)
			walk(typ.Elem(), ap, path+".*")
		case reflect.String:
			require.True(t, hasType(s, "string"), "%s: type string", path)
		case reflect.Int:
			require.True(t, hasType(s, "integer"), "%s: type integer", path)
		case reflect.Bool:
			require.True(t, hasType(s, "boolean"), "%s: type boolean", path)
		default:
			t.Fatalf("%s: no rule for %s", path, typ)
		}
	}
	walk(reflect.TypeFor[File](), root, "")
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestSchemaClosed checks that every object the schema describes with
// properties admits no others.
func TestSchemaClosed(t *testing.T) {
	t.Parallel()
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["properties"]; ok {
				require.Equal(t, false, v["additionalProperties"], "%s: additionalProperties must be false", path)
			}
			for k, c := range v {
				walk(c, path+"/"+k)
			}
		case []any:
			for i, c := range v {
				walk(c, path+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(rawSchema(t), "#")
}

var wantRE = regexp.MustCompile(`(?m)^# want: (.*)$`)

// TestCorpus runs the loader and the schema over testdata: good files pass
// both; bad files fail both (the loader with the message named on their
// "# want:" line); semantic files fail the loader only, because what is
// wrong with them needs the whole file (references, duplicates) or more
// than a pattern (cron, time zones, minimum intervals).
func TestCorpus(t *testing.T) {
	t.Parallel()
	schema := compileSchema(t)
	for _, dir := range []string{"good", "bad", "semantic"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		require.NoError(t, err)
		require.NotEmpty(t, files)
		for _, path := range files {
			t.Run(dir+"/"+filepath.Base(path), func(t *testing.T) {
				t.Parallel()
				data, err := os.ReadFile(path)
				require.NoError(t, err)
				_, loadErr := Parse(path, data)
				schemaErr := schema.Validate(yamlToJSON(t, data))
				switch dir {
				case "good":
					require.NoError(t, loadErr)
					require.NoError(t, schemaErr)
					return
				case "bad":
					require.Error(t, schemaErr, "the schema must reject it too")
				case "semantic":
					require.NoError(t, schemaErr, "the schema accepts it: only the loader can tell")
				}
				require.Error(t, loadErr)
				m := wantRE.FindSubmatch(data)
				require.NotNil(t, m, "a bad file starts with # want: <part of the loader's message>")
				require.Contains(t, loadErr.Error(), string(m[1]))
			})
		}
	}
}

// TestRootPolicies checks the reference policies.yaml: the loader and the
// schema accept it, it is what `make demo` runs, and it documents every
// field of the format (active or in a comment).
func TestRootPolicies(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(rootPath)
	require.NoError(t, err)
	f, err := Load(rootPath)
	require.NoError(t, err)
	require.NoError(t, compileSchema(t).Validate(yamlToJSON(t, data)))

	st, ok := f.Store("local")
	require.True(t, ok)
	require.Equal(t, ".rotator/secrets", st.Files.Dir)
	s, ok := f.Secret("db/postgres")
	require.True(t, ok)
	pg := s.Rotator.Postgres
	require.Equal(t, "env ROTATOR_PG_ADMIN_DSN", pg.AdminDSN.String())
	require.Equal(t, "app", pg.Role)
	require.Equal(t, ModeBlueGreen, pg.Mode)
	require.Equal(t, map[string]string{"host": "127.0.0.1", "database": "app"}, pg.Connection)
	require.Equal(t, []*PublishSpec{{Store: "local", Path: "db/postgres.json",
		Derive: map[string]string{"url": "postgres://{username}:{password}@{host}/{database}"}, Pos: s.Publish[0].Pos}}, s.Publish)
	require.Len(t, s.Checks, 1)
	require.Equal(t, Duration(0), *s.Checks[0].Delay)
	set := f.Settings(s)
	require.Equal(t, "30s", Duration(set.Grace).String())
	require.Equal(t, "0s", Duration(set.Monitor).String())
	require.Equal(t, "90d", Duration(set.Interval).String())

	// Every field name of every struct appears as "name:" in the file.
	text := string(data)
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		names, index := fields(typ)
		for _, name := range names {
			require.Regexp(t, `(?m)[\s{,]`+name+`:`, text, "policies.yaml documents %s.%s", typ.Name(), name)
			walk(typ.Field(index[name]).Type)
		}
	}
	walk(reflect.TypeFor[File]())
}

// TestFullSetsEveryField keeps testdata/good/full.yaml complete, so the
// corpus test runs every field through both the loader and the schema.
func TestFullSetsEveryField(t *testing.T) {
	t.Parallel()
	f, err := Load("testdata/good/full.yaml")
	require.NoError(t, err)
	// Exactly-one choices that one file cannot show together.
	exempt := map[string]bool{"SlackSpec.token": true}
	set := map[string]bool{}
	all := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		case reflect.Struct:
			if v.Type() == durationType {
				return
			}
			names, index := fields(v.Type())
			for _, name := range names {
				key := v.Type().Name() + "." + name
				all[key] = true
				fv := v.Field(index[name])
				if !fv.IsZero() {
					set[key] = true
				}
				walk(fv)
			}
		}
	}
	walk(reflect.ValueOf(f).Elem())
	var missing []string
	for k := range all {
		if !set[k] && !exempt[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "fields full.yaml does not set")
}
