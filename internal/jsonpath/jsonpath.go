// Package jsonpath reads one value out of decoded JSON by a simple path:
// dot-separated object keys and list indexes ("data.hash", "items.0.id",
// "items[0].id"; a leading "$." is ignored). It is what policies.yaml's
// key_path, id_path, json_path... mean.
package jsonpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Split turns a path into its parts.
func Split(path string) []string {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	path = strings.NewReplacer("[", ".", "]", "").Replace(path)
	if path == "" {
		return nil
	}
	return strings.Split(path, ".")
}

// Get returns the value at path in v (as decoded by Decode), and whether
// it is there.
func Get(v any, path string) (any, bool) {
	for _, part := range Split(path) {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[part]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// Decode decodes JSON keeping numbers as json.Number, so large ids and
// version numbers keep their digits.
func Decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// String returns the value at path as text: a string as is, a number as
// written, a boolean as true/false. Objects, lists and null are not text.
func String(v any, path string) (string, error) {
	x, ok := Get(v, path)
	if !ok {
		return "", fmt.Errorf("no value at %q", path)
	}
	switch s := x.(type) {
	case string:
		return s, nil
	case json.Number:
		return s.String(), nil
	case bool:
		return strconv.FormatBool(s), nil
	case nil:
		return "", fmt.Errorf("the value at %q is null", path)
	}
	return "", fmt.Errorf("the value at %q is not a string or a number", path)
}
