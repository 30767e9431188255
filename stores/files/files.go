package files

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	// priorSuffix keeps, while a version is newly published, the version
	// that was previous before it, so that putting back a failed run's
	// publish restores .previous too (it must hold the last version that
	// was really current, not the discarded one). It ends in .previous, so
	// no publish path can be it; and no path ends in .prior (priorStem).
	priorSuffix = priorStem + previousSuffix
	// priorStem: a path may not end in it either, since p.prior's
	// .previous would be p's prior slot (p.prior.previous), written
	// under p's lock and p.prior's alike.
	priorStem  = ".prior"
	metaSuffix = ".meta.json"
	// tempMarker ends the temporary file a write goes through:
	// .<base>.rotator-tmp beside the file it replaces (tempName).
	tempMarker = ".rotator-tmp"
	// lockMarker names the lock file of a published file p:
	// .<base of p>.rotator-lock beside it. Writers hold an exclusive flock
	// on it across read, compare and write, readers a shared one, so two
	// processes exclude each other. No publish path may contain it.
	lockMarker = ".rotator-lock"
	// withdrawnMarker names the file of run ids withdrawn from a
	// published file p (discarded by a failed run's compensation):
	// .<base of p>.rotator-withdrawn beside it. A publish of a withdrawn
	// run is refused (see withdraw). No publish path may contain it.
	withdrawnMarker = ".rotator-withdrawn"
	// withdrawnKept is how many withdrawn run ids the file keeps (the
	// newest).
	withdrawnKept = 16
)

// lockPoll is how often a blocked flock is tried again while the caller's
// context allows (a non-blocking flock in a loop, so a context ends the
// wait: a process paused while holding the lock must not hang the others
// past their action deadline).
const lockPoll = 5 * time.Millisecond

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
	swept map[string]bool // directories sweepLegacyTemps has listed

	// Test hooks (export_test.go): afterCompare runs in Publish between
	// the fence's compare and the write, under the lock; lockBusy runs
	// when the flock is held elsewhere.
	afterCompare func()
	lockBusy     func()
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
	root, rel, release, err := s.openForWrite(ctx, req.Path)
	if err != nil {
		return err
	}
	defer release()

	v := req.Version
	withdrawn, err := s.withdrawnRuns(root, rel)
	if err != nil {
		return err
	}
	if slices.Contains(withdrawn, v.RunID) && !req.RollForward {
		return rotation.Withdrawn("files store "+s.abs(rel), v.RunID)
	}
	cur, err := s.readSlot(root, rel)
	if err != nil && !errors.Is(err, errTorn) {
		return err
	}
	torn := err != nil
	if cur != nil && !torn && cur.version.RunID == v.RunID {
		return nil
	}
	// The fence: what is current must be what the caller observed. A torn
	// pair (a writer died between its two renames) has no trustworthy run
	// id; it is repaired, as the engine could not have observed it.
	if e := req.Expect; e != nil && !torn {
		found := ""
		if cur != nil {
			found = cur.version.RunID
		}
		if found != e.RunID {
			return rotation.StoreMoved("files store "+s.abs(rel), e.RunID, found, "")
		}
	}
	if s.afterCompare != nil {
		s.afterCompare()
	}
	next, err := s.encode(v)
	if err != nil {
		return fmt.Errorf("files store: publish %s: %w", s.abs(rel), err)
	}
	switch {
	case torn:
		// An earlier write (another process, or a crash) stopped between
		// the secret and its metadata. The .previous files were written
		// before it began, so they still hold the version to keep.
		s.log.WarnContext(ctx, "files store: repairing an interrupted write", "file", s.abs(rel), "run_id", v.RunID)
	case cur != nil:
		prev, err := s.readSlot(root, rel+previousSuffix)
		if err != nil && !errors.Is(err, errTorn) {
			return err
		}
		// An interrupted publish of this version may have moved the
		// current file to .previous already: then the prior slot holds
		// what to keep and is left alone.
		if prev == nil || err != nil || prev.version.RunID != cur.version.RunID || cur.version.RunID == "" {
			// The slots kept are hard links to files already written
			// and synced (copies where links are not supported): no
			// second copy of the data to write and sync.
			if prev != nil && err == nil {
				if err := s.linkSlot(root, rel+previousSuffix, rel+priorSuffix, prev.content); err != nil {
					return err
				}
			} else if err := s.removeSlot(root, rel+priorSuffix); err != nil {
				return err
			}
			if err := s.linkSlot(root, rel, rel+previousSuffix, cur.content); err != nil {
				return err
			}
		}
	}
	if err := s.writeSlot(root, rel, next); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "files store: published", "file", s.abs(rel), "run_id", v.RunID,
		"version", v.Number, "fingerprint", v.Credential.Secret.Fingerprint())
	return nil
}

// finishDiscard completes a discarding rollback that stopped between its
// writes: the current file was put back (it equals .previous) but
// .previous still holds the put-back version instead of the prior one.
func (s *Store) finishDiscard(ctx context.Context, root *os.Root, rel string, cur *slot) error {
	prev, err := s.readSlot(root, rel+previousSuffix)
	if err != nil || prev == nil || cur.version.RunID == "" || prev.version.RunID != cur.version.RunID {
		return nil
	}
	prior, err := s.readSlot(root, rel+priorSuffix)
	if err != nil || prior == nil {
		return nil
	}
	if err := s.writeSlot(root, rel+previousSuffix, prior.content); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "files store: finished an interrupted discard", "file", s.abs(rel), "previous_run_id", prior.version.RunID)
	return s.removeSlot(root, rel+priorSuffix)
}

// Rollback swaps the current and previous files when the current one
// holds req.RunID; otherwise it does nothing. With no previous file it
// fails and leaves the current one in place.
func (s *Store) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("files store: rollback %s: %w", req.Path, err)
	}
	if req.Discard {
		// Recorded first, and whether or not the file holds the run's
		// version (the run may have failed before publishing here while
		// a delayed publish of it is still on its way).
		root, rel, release, err := s.openForWrite(ctx, req.Path)
		if err == nil {
			defer release()
			if err := s.withdraw(root, rel, req.RunID); err != nil {
				// The put back matters more than the record.
				s.log.WarnContext(ctx, "files store: could not record the withdrawn run: putting the file back anyway, "+
					"without the guard against a delayed publish of the run", "file", s.abs(rel), "run_id", req.RunID, "err", err.Error())
			}
			return s.rollbackLocked(ctx, root, rel, req)
		}
		if ctx.Err() != nil {
			// The lock was not had in time (a publish may hold it, the
			// delayed one this record is for): tried again, record first.
			return err
		}
		// No write lock (a directory that is missing and cannot be
		// created, a read-only mount): the record is best effort, and
		// the put back goes on as a rollback without it, which does not
		// need to write where nothing was published (a publish that
		// could not write here failed before it wrote anything).
		s.log.WarnContext(ctx, "files store: could not record the withdrawn run (no write lock): putting the file back without "+
			"the guard against a delayed publish of the run", "path", req.Path, "run_id", req.RunID, "err", err.Error())
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
	// A writer creates the lock file when it is missing (a file
	// published before the store took locks, a directory restored
	// without its dot files): without it the rollback would lock nothing.
	if _, err := root.Stat(rel); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing published here
	}
	funlock, err := s.flock(ctx, root, rel, true, true)
	if err != nil {
		return err
	}
	defer funlock()
	return s.rollbackLocked(ctx, root, rel, req)
}

// rollbackLocked is Rollback with rel's locks held.
func (s *Store) rollbackLocked(ctx context.Context, root *os.Root, rel string, req rotation.RollbackRequest) error {
	cur, err := s.readSlot(root, rel)
	if err != nil {
		return err
	}
	if cur == nil {
		return nil
	}
	if cur.version.RunID != req.RunID {
		if req.Discard {
			return s.finishDiscard(ctx, root, rel, cur)
		}
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
	if e := req.Expect; e != nil && e.RunID != "" && prev.version.RunID != e.RunID {
		return rotation.PreviousMoved("files store "+s.abs(rel+previousSuffix), e.RunID, prev.version.RunID, "")
	}
	// The current file is replaced first so that readers never lose the
	// version being restored; a crash between the two writes leaves the
	// restored version in both places, which a repeated Rollback (its run
	// is no longer current) leaves alone.
	if err := s.writeSlot(root, rel, prev.content); err != nil {
		return err
	}
	if req.Discard {
		// The version never was really current: .previous goes back to
		// what it held before the publish.
		prior, err := s.readSlot(root, rel+priorSuffix)
		if err != nil && !errors.Is(err, errTorn) {
			return err
		}
		if prior != nil && err == nil {
			if err := s.writeSlot(root, rel+previousSuffix, prior.content); err != nil {
				return err
			}
		} else if err := s.removeSlot(root, rel+previousSuffix); err != nil {
			return err
		}
		return s.removeSlot(root, rel+priorSuffix)
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
			funlock, err := s.flock(ctx, root, rel, false, false)
			if err != nil {
				return err
			}
			if funlock != nil {
				defer funlock()
			}
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

// openForWrite prepares a write of path: it takes the in-process lock and
// the exclusive flock (created when missing) held across read, compare and
// write, opens the root and creates the file's directory. release undoes
// all of it.
func (s *Store) openForWrite(ctx context.Context, path string) (*os.Root, string, func(), error) {
	rel, err := s.rel(path)
	if err != nil {
		return nil, "", nil, err
	}
	unlock := s.lock(rel)
	root, err := s.openRoot(true)
	if err != nil {
		unlock()
		return nil, "", nil, err
	}
	fail := func(err error) (*os.Root, string, func(), error) {
		_ = root.Close()
		unlock()
		return nil, "", nil, err
	}
	if dir := filepath.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, dirMode); err != nil {
			return fail(s.ioErr("create directory", filepath.Join(s.dir, dir), err))
		}
	}
	funlock, err := s.flock(ctx, root, rel, true, true)
	if err != nil {
		return fail(err)
	}
	if err := s.sweepLegacyTemps(root, filepath.Dir(rel)); err != nil {
		funlock()
		return fail(err)
	}
	return root, rel, func() { funlock(); _ = root.Close(); unlock() }, nil
}

// flock takes the cross-process lock of path rel: an exclusive (or, for
// readers, shared) flock on its lock file, waiting while ctx allows. With
// create unset a missing lock file (or directory) gives (nil, nil):
// nothing was ever written there, or only by a writer that predates the
// lock, and there is nothing to exclude. The lock file holds nothing and
// stays in place: removing it would let two processes lock two different
// inodes of one name.
func (s *Store) flock(ctx context.Context, root *os.Root, rel string, exclusive, create bool) (func(), error) {
	name := lockName(rel)
	// A reader opens it read-only (a flock needs no write access), so a
	// read-only mount of the directory can still be read.
	flags := os.O_RDONLY
	if exclusive {
		flags = os.O_RDWR
	}
	if create {
		flags |= os.O_CREATE
	}
	f, err := root.OpenFile(name, flags, fileMode)
	if !create && errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, s.ioErr("open lock file", s.abs(name), err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for busy := false; ; busy = true {
		if busy && s.lockBusy != nil {
			s.lockBusy()
		}
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, s.ioErr("lock", s.abs(name), err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("files store: lock %s: another process holds it: %w", s.abs(name), ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}

// lockName is the lock file of path rel: .<base>.rotator-lock beside it.
func lockName(rel string) string {
	return filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+lockMarker)
}

func withdrawnName(rel string) string {
	return filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+withdrawnMarker)
}

// withdrawnRuns reads the run ids withdrawn from rel (none when the file
// is missing). The caller holds rel's exclusive lock.
func (s *Store) withdrawnRuns(root *os.Root, rel string) ([]string, error) {
	b, err := root.ReadFile(withdrawnName(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, s.ioErr("read", s.abs(withdrawnName(rel)), err)
	}
	return strings.Fields(string(b)), nil
}

// withdraw records run as withdrawn from rel, before a discarding
// rollback puts rel back: a publish of run's version that arrives after
// it (a process that lost its lease and whose request was delayed, while
// the process that took over resumed the same run, failed and
// compensated) is refused instead of making current a credential the
// target has disabled. The fence (Expect) cannot tell: after the put
// back the file holds again what the delayed request observed. A run
// whose version was discarded never publishes again. The caller holds
// rel's exclusive lock.
func (s *Store) withdraw(root *os.Root, rel, run string) error {
	runs, err := s.withdrawnRuns(root, rel)
	if err != nil {
		return err
	}
	if slices.Contains(runs, run) {
		return nil
	}
	runs = append([]string{run}, runs...)
	if len(runs) > withdrawnKept {
		runs = runs[:withdrawnKept]
	}
	return s.writeAtomic(root, withdrawnName(rel), []byte(strings.Join(runs, "\n")+"\n"))
}

// rel checks a publish path and returns it cleaned, relative to the dir.
func (s *Store) rel(p string) (string, error) {
	return checkPath(p, s.dir)
}

// ValidatePath checks a publish path of a files store without touching the
// disk (what Publish would refuse), so that `rotator validate` reports it.
func ValidatePath(p string) error {
	_, err := checkPath(p, "the store's directory")
	return err
}

// checkPath gives the clean relative form of publish path p inside dir,
// or why it cannot be one.
func checkPath(p, dir string) (string, error) {
	bad := func(why string) error {
		return rotation.Permanent(fmt.Errorf("files store: path %q %s; use a relative path inside %s such as db/postgres.json", p, why, dir))
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
	if strings.HasSuffix(base, previousSuffix) || strings.HasSuffix(base, metaSuffix) || strings.HasSuffix(base, priorStem) ||
		strings.Contains(base, tempMarker) || strings.Contains(base, lockMarker) || strings.Contains(base, withdrawnMarker) {
		return "", bad(fmt.Sprintf("ends in a name the store keeps beside published files (%s, %s, %s)", previousSuffix, metaSuffix, priorStem))
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

// linkSlot makes the slot whose file is to hold what the slot whose file
// is from holds (c, read from it under the lock): each file hard-linked
// under a temporary name and renamed into place, then the directory
// synced, so the slot is replaced atomically and durably without writing
// the data again. The files are never written in place (every write
// renames a new file over the name), so two names may share them. Where
// the file system refuses a hard link, c is written as a copy.
func (s *Store) linkSlot(root *os.Root, from, to string, c content) error {
	if err := s.linkAtomic(root, from, to, c.file); err != nil {
		return err
	}
	if s.format != FormatRaw {
		return nil
	}
	if c.meta == nil {
		if err := root.Remove(to + metaSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.ioErr("remove", s.abs(to+metaSuffix), err)
		}
		return nil
	}
	return s.linkAtomic(root, from+metaSuffix, to+metaSuffix, c.meta)
}

// linkAtomic replaces to with a hard link to from (data, when links are
// not supported).
func (s *Store) linkAtomic(root *os.Root, from, to string, data []byte) error {
	dir := filepath.Dir(to)
	tmp := tempName(to)
	if fi, err := root.Lstat(from); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != fileMode {
		// A file put there by hand, with other permissions (or not a
		// plain file): the kept slot is a copy with the store's mode.
		return s.writeAtomic(root, to, data)
	}
	if err := s.removeTemp(root, tmp); err != nil {
		return err
	}
	if err := root.Link(from, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return s.ioErr("link", s.abs(from), err)
		}
		// No hard links here (or not across this directory): a copy.
		return s.writeAtomic(root, to, data)
	}
	if err := root.Rename(tmp, to); err != nil {
		_ = root.Remove(tmp)
		return s.ioErr("rename into place", s.abs(to), err)
	}
	return s.syncDir(root, dir)
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

// removeSlot removes the slot whose file is name (and its metadata); a
// missing slot is not an error.
func (s *Store) removeSlot(root *os.Root, name string) error {
	for _, n := range []string{name, name + metaSuffix} {
		if err := root.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.ioErr("remove", s.abs(n), err)
		}
	}
	return s.syncDir(root, filepath.Dir(name))
}

// writeAtomic replaces name with data: a temp file in the same directory
// (tempName), written, synced and made 0600, renamed over name, then the
// directory synced. Readers see the old content or the new, never a
// missing or partial file.
func (s *Store) writeAtomic(root *os.Root, name string, data []byte) (err error) {
	dir := filepath.Dir(name)
	tmp := tempName(name)
	if err := s.removeTemp(root, tmp); err != nil {
		return err
	}
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

// tempName is the temporary file a write of name goes through:
// .<base>.rotator-tmp beside it. Every write holds the exclusive lock of
// the published file its slot belongs to (openForWrite), so no two
// writers use one temporary name at once, and a name per slot needs no
// listing of the directory to find what a writer that died left behind:
// the next write of the slot removes it first (removeTemp).
func tempName(name string) string {
	dir, base := filepath.Split(name)
	return filepath.Join(dir, "."+base+tempMarker)
}

// removeTemp removes the temporary file tmp a dead writer left (a missing
// one is the usual case).
func (s *Store) removeTemp(root *os.Root, tmp string) error {
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.ioErr("remove stale temporary file", s.abs(tmp), err)
	}
	return nil
}

// legacyTempAge is how old a temporary file named as rotator before
// tempName named them (.<base>.rotator-tmp-<16 hex>) must be before
// sweepLegacyTemps removes it: older writers renamed theirs within
// milliseconds, so one that old was left by a writer that died.
const legacyTempAge = time.Minute

// sweepLegacyTemps removes, once per directory and process, what writers
// of rotator versions that named temporary files at random left behind
// when they died (each may hold a plaintext secret). One listing of the
// directory per process, not per write (it cost each publish time in
// proportion to the directory) once it found nothing left to wait for:
// while a legacy temporary file is too young to remove (it may be a live
// older writer's) or the listing failed, the next write lists again, so a
// long-running process does not keep a dead writer's file because it
// first saw it young.
func (s *Store) sweepLegacyTemps(root *os.Root, dir string) error {
	s.mu.Lock()
	if s.swept == nil {
		s.swept = map[string]bool{}
	}
	done := s.swept[dir]
	s.mu.Unlock()
	if done {
		return nil
	}
	f, err := root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return s.ioErr("open directory", s.abs(dir), err)
	}
	entries, err := f.ReadDir(-1)
	_ = f.Close()
	if err != nil {
		return s.ioErr("list directory", s.abs(dir), err)
	}
	young := false
	for _, e := range entries {
		if !isLegacyTemp(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone meanwhile
		}
		if err != nil || time.Since(info.ModTime()) < legacyTempAge {
			young = true // maybe a live writer's: looked at again by the next write
			continue
		}
		name := filepath.Join(dir, e.Name())
		if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.ioErr("remove stale temporary file", s.abs(name), err)
		}
	}
	if !young {
		s.mu.Lock()
		s.swept[dir] = true
		s.mu.Unlock()
	}
	return nil
}

// isLegacyTemp reports whether name is .<base>.rotator-tmp-<16 hex>.
func isLegacyTemp(name string) bool {
	i := strings.LastIndex(name, tempMarker+"-")
	if i <= 1 || name[0] != '.' {
		return false
	}
	rest := name[i+len(tempMarker)+1:]
	if len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
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
