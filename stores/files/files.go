package files

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// Formats a FilesSpec may name.
const (
	FormatJSON = "json"
	FormatRaw  = "raw"
)

// Suffixes of the files kept beside a published file. A publish path may
// not end in one, so that no path collides with another's companions.
const (
	previousSuffix = ".previous"
	metaSuffix     = ".meta.json"
	tempMarker     = ".rotator-tmp-"
)

// Modes of what the store creates.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// How often Read and Describe re-read a raw secret whose metadata does not
// match it: another process may be between the two renames of a publish.
const (
	tornAttempts = 5
	tornWait     = 20 * time.Millisecond
)

// Store publishes versions as files in one directory. It is safe for
// concurrent use; see the package documentation for the layout.
type Store struct {
	dir    string
	format string
	log    *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

var _ rotation.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger publishes and rollbacks are reported to
// (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// Validate checks a files store's configuration without touching the disk.
func Validate(spec *policy.FilesSpec) error {
	if spec == nil {
		return errors.New("files store: no configuration")
	}
	if strings.TrimSpace(spec.Dir) == "" {
		return errors.New("files store: dir is required (the directory the secret files are written to)")
	}
	switch spec.Format {
	case "", FormatJSON, FormatRaw:
	default:
		return fmt.Errorf("files store: format %q is not known: use %q (one JSON file per secret) or %q (the secret alone, metadata in a .meta.json beside it)",
			spec.Format, FormatJSON, FormatRaw)
	}
	return nil
}

// New builds a files store. A relative spec.Dir is resolved against
// baseDir (the directory of the policies file). The directory is not
// touched until the first write, which creates it with mode 0700.
func New(spec *policy.FilesSpec, baseDir string, opts ...Option) (*Store, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	dir := spec.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(baseDir, dir)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("files store: resolve dir %q: %w", spec.Dir, err)
	}
	s := &Store{
		dir:    dir,
		format: spec.Format,
		log:    slog.New(slog.DiscardHandler),
		locks:  map[string]*sync.Mutex{},
	}
	if s.format == "" {
		s.format = FormatJSON
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Dir returns the absolute directory the store writes to.
func (s *Store) Dir() string { return s.dir }

// Stage does nothing: a directory of files has no pending label, and a
// staged file would be one more copy of the secret on disk for no reader.
// The path is still checked, so a bad path fails early.
func (s *Store) Stage(_ context.Context, req rotation.StageRequest) error {
	_, err := s.rel(req.Path)
	return err
}

// Abort does nothing, as Stage stores nothing.
func (s *Store) Abort(_ context.Context, req rotation.AbortRequest) error {
	_, err := s.rel(req.Path)
	return err
}

// Publish makes req.Version the current file, after copying the current
// one to .previous. It does nothing when the current file already holds
// req.Version.RunID.
func (s *Store) Publish(ctx context.Context, req rotation.PublishRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("files store: publish %s: %w", req.Path, err)
	}
	rel, err := s.rel(req.Path)
	if err != nil {
		return err
	}
	unlock := s.lock(rel)
	defer unlock()

	root, err := s.openRoot(true)
	if err != nil {
		return err
	}
	defer root.Close()

	cur, err := s.readSlot(root, rel)
	if err != nil && !errors.Is(err, errTorn) {
		return err
	}
	torn := err != nil
	v := req.Version
	if cur != nil && !torn && cur.version.RunID == v.RunID {
		return nil
	}
	next, err := s.encode(v)
	if err != nil {
		return fmt.Errorf("files store: publish %s: %w", s.abs(rel), err)
	}
	if dir := filepath.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, dirMode); err != nil {
			return s.ioErr("create directory", filepath.Join(s.dir, dir), err)
		}
	}
	switch {
	case torn:
		// An earlier write (another process, or a crash) stopped between
		// the secret and its metadata. The .previous files were written
		// before it began, so they still hold the version to keep.
		s.log.WarnContext(ctx, "files store: repairing an interrupted write", "file", s.abs(rel), "run_id", v.RunID)
	case cur != nil:
		if err := s.writeSlot(root, rel+previousSuffix, cur.content); err != nil {
			return err
		}
	}
	if err := s.writeSlot(root, rel, next); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "files store: published", "file", s.abs(rel), "run_id", v.RunID,
		"version", v.Number, "fingerprint", v.Credential.Secret.Fingerprint())
	return nil
}

// Rollback swaps the current and previous files when the current one
// holds req.RunID; otherwise it does nothing. With no previous file it
// fails and leaves the current one in place.
func (s *Store) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("files store: rollback %s: %w", req.Path, err)
	}
	rel, err := s.rel(req.Path)
	if err != nil {
		return err
	}
	unlock := s.lock(rel)
	defer unlock()

	root, err := s.openRoot(false)
	if err != nil || root == nil {
		return err
	}
	defer root.Close()

	cur, err := s.readSlot(root, rel)
	if err != nil {
		return err
	}
	if cur == nil || cur.version.RunID != req.RunID {
		return nil
	}
	prev, err := s.readSlot(root, rel+previousSuffix)
	if err != nil {
		return err
	}
	if prev == nil {
		return rotation.Permanent(fmt.Errorf("files store: roll back run %s at %s: no previous version (%s does not exist); the current file was left in place: %w",
			req.RunID, s.abs(rel), s.abs(rel+previousSuffix), rotation.ErrNotFound))
	}
	// The current file is replaced first so that readers never lose the
	// version being restored; a crash between the two writes leaves the
	// restored version in both places, which a repeated Rollback (its run
	// is no longer current) leaves alone.
	if err := s.writeSlot(root, rel, prev.content); err != nil {
		return err
	}
	if err := s.writeSlot(root, rel+previousSuffix, cur.content); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "files store: rolled back", "file", s.abs(rel), "run_id", req.RunID,
		"restored_run_id", prev.version.RunID, "restored_fingerprint", prev.version.Credential.Secret.Fingerprint())
	return nil
}

// Describe returns the metadata of the current and previous files.
func (s *Store) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	var resp rotation.DescribeResponse
	rel, err := s.rel(req.Path)
	if err != nil {
		return resp, err
	}
	err = s.readStable(ctx, rel, func(root *os.Root) error {
		resp = rotation.DescribeResponse{}
		for _, x := range []struct {
			name string
			meta **rotation.VersionMeta
		}{{rel, &resp.Current}, {rel + previousSuffix, &resp.Previous}} {
			sl, err := s.readSlot(root, x.name)
			if err != nil {
				return err
			}
			if sl != nil {
				m := sl.version.Meta()
				*x.meta = &m
			}
		}
		return nil
	})
	if err != nil {
		return rotation.DescribeResponse{}, err
	}
	return resp, nil
}

// Read returns the current or previous version with its secret.
func (s *Store) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	rel, err := s.rel(req.Path)
	if err != nil {
		return rotation.Version{}, err
	}
	name := rel
	if req.Which == rotation.Previous {
		name = rel + previousSuffix
	}
	var sl *slot
	err = s.readStable(ctx, rel, func(root *os.Root) error {
		sl, err = s.readSlot(root, name)
		return err
	})
	if err != nil {
		return rotation.Version{}, err
	}
	if sl == nil {
		return rotation.Version{}, fmt.Errorf("files store: read %s: %w", s.abs(name), rotation.ErrNotFound)
	}
	return sl.version, nil
}

// readStable runs read under the path's lock (skipping it when the
// directory does not exist: nothing is published), again while it finds a
// raw secret and its metadata disagreeing: another process may be between
// the two renames of a publish.
func (s *Store) readStable(ctx context.Context, rel string, read func(root *os.Root) error) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("files store: read %s: %w", s.abs(rel), err)
		}
		err := func() error {
			unlock := s.lock(rel)
			defer unlock()
			root, err := s.openRoot(false)
			if err != nil || root == nil {
				return err
			}
			defer root.Close()
			return read(root)
		}()
		if !errors.Is(err, errTorn) || attempt == tornAttempts {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(tornWait):
		}
	}
}

// lock takes the in-process lock of one path and returns its release.
func (s *Store) lock(rel string) func() {
	s.mu.Lock()
	l := s.locks[rel]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[rel] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// rel checks a publish path and returns it cleaned, relative to the dir.
func (s *Store) rel(p string) (string, error) {
	bad := func(why string) error {
		return rotation.Permanent(fmt.Errorf("files store: path %q %s; use a relative path inside %s such as db/postgres.json", p, why, s.dir))
	}
	if p == "" {
		return "", bad("is empty")
	}
	if strings.ContainsRune(p, 0) {
		return "", bad("contains a NUL byte")
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") || filepath.VolumeName(p) != "" {
		return "", bad("is absolute")
	}
	c := filepath.Clean(filepath.FromSlash(p))
	if c == "." || c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return "", bad("escapes the directory")
	}
	base := filepath.Base(c)
	if strings.HasSuffix(base, previousSuffix) || strings.HasSuffix(base, metaSuffix) || strings.Contains(base, tempMarker) {
		return "", bad(fmt.Sprintf("ends in a name the store keeps beside published files (%s, %s)", previousSuffix, metaSuffix))
	}
	return c, nil
}

func (s *Store) abs(rel string) string { return filepath.Join(s.dir, rel) }

// openRoot opens the store's directory, creating it when create is set.
// Without create, a missing directory gives (nil, nil): nothing published.
// Every file operation goes through the root, so a symlink inside the
// directory cannot lead a write outside it.
func (s *Store) openRoot(create bool) (*os.Root, error) {
	if create {
		if err := os.MkdirAll(s.dir, dirMode); err != nil {
			return nil, s.ioErr("create directory", s.dir, err)
		}
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		if !create && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, s.ioErr("open directory", s.dir, err)
	}
	return root, nil
}

// content is what one slot (current or previous) holds on disk, byte for
// byte: the file, and for the raw format its metadata file (nil: none).
type content struct {
	file []byte
	meta []byte
}

// slot is a slot read from disk.
type slot struct {
	content content
	version rotation.Version
}

// errTorn marks a raw slot whose secret does not match its metadata.
var errTorn = errors.New("the secret file does not match its metadata")

// readSlot reads the slot whose file is name; (nil, nil) when absent.
func (s *Store) readSlot(root *os.Root, name string) (*slot, error) {
	file, err := root.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		file = nil
	} else if err != nil {
		return nil, s.ioErr("read", s.abs(name), err)
	}
	if s.format == FormatJSON {
		if file == nil {
			return nil, nil
		}
		d, err := decodeData(file)
		if err != nil {
			return nil, s.corrupt(name, err)
		}
		v, err := rotation.ParseData(d)
		if err != nil {
			return nil, s.corrupt(name, err)
		}
		return &slot{content: content{file: file}, version: v}, nil
	}

	metaName := name + metaSuffix
	meta, err := root.ReadFile(metaName)
	if errors.Is(err, fs.ErrNotExist) {
		meta = nil
	} else if err != nil {
		return nil, s.ioErr("read", s.abs(metaName), err)
	}
	switch {
	case file == nil && meta == nil:
		return nil, nil
	case file == nil:
		return nil, fmt.Errorf("files store: %s exists but %s does not (%w): publish again, or remove the metadata file",
			s.abs(metaName), s.abs(name), errTorn)
	}
	d := map[string]string{}
	if meta != nil {
		if d, err = decodeData(meta); err != nil {
			return nil, s.corrupt(metaName, err)
		}
	}
	// A secret file without metadata is a version of unknown origin (put
	// there by hand): it is read, with no number or run id.
	field := d[rotation.DataField]
	if field == "" {
		field = "password"
	}
	sec := string(file)
	if fp := d[rotation.DataFingerprint]; fp != "" && fp != secret.New(sec).Fingerprint() {
		return nil, fmt.Errorf("files store: %s and %s: %w (a write was interrupted, or is in progress in another process): publish again to repair",
			s.abs(name), s.abs(metaName), errTorn)
	}
	d[field] = sec
	v, err := rotation.ParseData(d)
	if err != nil {
		return nil, s.corrupt(metaName, err)
	}
	return &slot{content: content{file: file, meta: meta}, version: v}, nil
}

// encode renders v as the store's format.
func (s *Store) encode(v rotation.Version) (content, error) {
	d := v.Data()
	if s.format == FormatJSON {
		b, err := encodeData(d)
		return content{file: b}, err
	}
	delete(d, v.Credential.SecretField())
	b, err := encodeData(d)
	return content{file: []byte(v.Credential.Secret.Reveal()), meta: b}, err
}

// writeSlot writes the slot whose file is name: the file, then (raw) its
// metadata, each atomically.
func (s *Store) writeSlot(root *os.Root, name string, c content) error {
	if err := s.writeAtomic(root, name, c.file); err != nil {
		return err
	}
	if s.format != FormatRaw {
		return nil
	}
	metaName := name + metaSuffix
	if c.meta == nil {
		if err := root.Remove(metaName); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.ioErr("remove", s.abs(metaName), err)
		}
		return nil
	}
	return s.writeAtomic(root, metaName, c.meta)
}

// writeAtomic replaces name with data: a temp file in the same directory,
// written, synced and made 0600, renamed over name, then the directory
// synced. Readers see the old content or the new, never a missing or
// partial file.
func (s *Store) writeAtomic(root *os.Root, name string, data []byte) (err error) {
	dir, base := filepath.Split(name)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+base+tempMarker+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return s.ioErr("create temporary file", s.abs(tmp), err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return s.ioErr("write", s.abs(tmp), err)
	}
	if err = f.Sync(); err != nil {
		return s.ioErr("sync", s.abs(tmp), err)
	}
	if err = f.Chmod(fileMode); err != nil {
		return s.ioErr("chmod", s.abs(tmp), err)
	}
	if err = f.Close(); err != nil {
		return s.ioErr("close", s.abs(tmp), err)
	}
	if err = root.Rename(tmp, name); err != nil {
		return s.ioErr("rename into place", s.abs(name), err)
	}
	return s.syncDir(root, dir)
}

func (s *Store) syncDir(root *os.Root, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return s.ioErr("open directory", s.abs(dir), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return s.ioErr("sync directory", s.abs(dir), err)
	}
	return nil
}

// ioErr wraps a file system error with what to check. Permission and
// read-only errors are Permanent: retrying will not fix them.
func (s *Store) ioErr(op, file string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return rotation.Permanent(fmt.Errorf("files store: %s %s: %w: check that the rotator's user owns or may write the directory and file (files are mode 0600, directories 0700)", op, file, err))
	case errors.Is(err, syscall.EROFS):
		return rotation.Permanent(fmt.Errorf("files store: %s %s: %w: the file system is read-only; check the volume mount", op, file, err))
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("files store: %s %s: %w: the disk or quota is full; free space", op, file, err)
	// os.Root exports no sentinel for a symlink that leads out of it.
	case strings.Contains(err.Error(), "path escapes from parent"):
		return rotation.Permanent(fmt.Errorf("files store: %s %s: %w: a symlink leads outside %s; remove it", op, file, err, s.dir))
	}
	return fmt.Errorf("files store: %s %s: %w: check the directory, its permissions and free disk space", op, file, err)
}

// corrupt reports a file that cannot be parsed, never its content.
func (s *Store) corrupt(name string, why error) error {
	return rotation.Permanent(fmt.Errorf("files store: %s is not a version this store wrote (%v): fix or remove it, then publish again", s.abs(name), why))
}

// decodeData parses a JSON object of strings. Its errors say where the
// problem is, never what the content was.
func decodeData(b []byte) (map[string]string, error) {
	var d map[string]string
	err := json.Unmarshal(b, &d)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil && d == nil:
		return nil, errors.New("not a JSON object")
	case err == nil:
		return d, nil
	case errors.As(err, &syn):
		return nil, fmt.Errorf("invalid JSON at byte %d of %d", syn.Offset, len(b))
	case errors.As(err, &typ):
		if typ.Field != "" {
			return nil, fmt.Errorf("field %q is a JSON %s, not a string", typ.Field, typ.Value)
		}
		return nil, fmt.Errorf("a JSON %s, not an object of strings", typ.Value)
	}
	return nil, errors.New("not a JSON object of strings")
}

// encodeData renders d as indented JSON with sorted keys and a trailing
// newline, without HTML escaping (the secret is written as it is).
func encodeData(d map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, errors.New("encode the version as JSON")
	}
	return buf.Bytes(), nil
}
