package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rotator/rotator/internal/secret"
)

// IsZero reports whether the reference names nothing.
func (r Ref) IsZero() bool { return r.Env == "" && r.File == "" }

// String names the reference, never its value: "env ROTATOR_PG_ADMIN_DSN"
// or "file /run/secrets/pg".
func (r Ref) String() string {
	switch {
	case r.Env != "":
		return "env " + r.Env
	case r.File != "":
		return "file " + r.path()
	}
	return "(no reference)"
}

// path is File made absolute against Dir when it is relative.
func (r Ref) path() string {
	if r.File == "" || filepath.IsAbs(r.File) || r.Dir == "" {
		return r.File
	}
	return filepath.Join(r.Dir, r.File)
}

// Resolve reads the secret the reference points at: the value of the
// environment variable, or the contents of the file with trailing newlines
// trimmed (a relative file is relative to the policies file's directory).
// An unset or empty variable, or an unreadable or empty file, is an error
// that names the reference and where it is written, never a value.
func (r Ref) Resolve() (secret.Value, error) {
	where := ""
	if !r.Pos.IsZero() {
		where = " (" + r.Pos.String() + ")"
	}
	switch {
	case r.Env != "" && r.File != "":
		return secret.Value{}, fmt.Errorf("secret reference%s sets both env and file: set one", where)
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok {
			return secret.Value{}, fmt.Errorf("environment variable %s%s is not set: export it before starting rotator", r.Env, where)
		}
		if v == "" {
			return secret.Value{}, fmt.Errorf("environment variable %s%s is empty: give it the secret", r.Env, where)
		}
		return secret.New(v), nil
	case r.File != "":
		p := r.path()
		b, err := os.ReadFile(p)
		if err != nil {
			// The *PathError names the file and the reason, not contents.
			return secret.Value{}, fmt.Errorf("read secret file%s: %w", where, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return secret.Value{}, fmt.Errorf("secret file %s%s is empty: write the secret into it", p, where)
		}
		return secret.New(v), nil
	}
	return secret.Value{}, fmt.Errorf("secret reference%s is empty: use {env: NAME} or {file: PATH}", where)
}
