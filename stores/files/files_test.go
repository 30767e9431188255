package files_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
)

func newStore(t *testing.T, format string) (*files.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	s, err := files.New(&policy.FilesSpec{Dir: dir, Format: format}, "")
	require.NoError(t, err)
	return s, dir
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, storetest.Harness{
				New: func(t *testing.T) (rotation.Store, string) {
					s, _ := newStore(t, format)
					return s, "db/postgres.json"
				},
			})
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		spec *policy.FilesSpec
		want string
	}{
		{"nil", nil, "no configuration"},
		{"no dir", &policy.FilesSpec{}, "dir is required"},
		{"bad format", &policy.FilesSpec{Dir: "x", Format: "yaml"}, `format "yaml" is not known`},
		{"json", &policy.FilesSpec{Dir: "x", Format: "json"}, ""},
		{"raw", &policy.FilesSpec{Dir: "x", Format: "raw"}, ""},
		{"default", &policy.FilesSpec{Dir: "x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := files.Validate(tc.spec)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			_, err = files.New(tc.spec, t.TempDir())
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestNewResolvesRelativeDirLazily(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s, err := files.New(&policy.FilesSpec{Dir: "run/secrets"}, base)
	require.NoError(t, err)
	dir := filepath.Join(base, "run", "secrets")
	require.Equal(t, dir, s.Dir())
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, fs.ErrNotExist, "New must not create the directory")

	// Reads of a directory that does not exist yet see nothing published.
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: "app.json"})
	require.NoError(t, err)
	require.Equal(t, rotation.DescribeResponse{}, d)
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, fs.ErrNotExist, "a read must not create the directory")

	v := storetest.Version(t, 1, storetest.RunID())
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "app/db.json", Version: v}))
	for _, p := range []string{dir, filepath.Join(dir, "app")} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.True(t, fi.IsDir())
		require.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), p)
	}
}

func TestJSONLayout(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, "")
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	for _, v := range []rotation.Version{v1, v2} {
		require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "db/postgres.json", Version: v}))
	}
	file := filepath.Join(dir, "db", "postgres.json")
	for name, v := range map[string]rotation.Version{file: v2, file + ".previous": v1} {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(string(b), "}\n"), "trailing newline")
		var d map[string]string
		require.NoError(t, json.Unmarshal(b, &d))
		require.Equal(t, v.Data(), d, name)
		want, err := json.MarshalIndent(v.Data(), "", "  ") // sorted keys
		require.NoError(t, err)
		require.Equal(t, string(want)+"\n", string(b))
		requireMode(t, name)
	}
	requireOnly(t, filepath.Join(dir, "db"), onDisk(files.FormatJSON, "postgres.json")...)
}

func TestRawLayout(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatRaw)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	for _, v := range []rotation.Version{v1, v2} {
		require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "db/password", Version: v}))
	}
	file := filepath.Join(dir, "db", "password")
	for name, v := range map[string]rotation.Version{file: v2, file + ".previous": v1} {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		require.True(t, v.Credential.Secret.Equal(secret.New(string(b))), "%s holds only the secret, no newline", name)
		m, err := os.ReadFile(name + ".meta.json")
		require.NoError(t, err)
		require.NotContains(t, string(m), v.Credential.Secret.Reveal(), "metadata must not hold the secret")
		var d map[string]string
		require.NoError(t, json.Unmarshal(m, &d))
		want := v.Data()
		delete(want, "password")
		require.Equal(t, want, d)
		requireMode(t, name)
		requireMode(t, name+".meta.json")
	}
	requireOnly(t, filepath.Join(dir, "db"), onDisk(files.FormatRaw, "password")...)
}

// A secret file put there by hand, without metadata, is read as a version
// of unknown origin and kept as the previous one on the first publish.
func TestRawWithoutMetadata(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatRaw)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "token"), []byte("hand-placed-token-0123456789"), 0o600))
	cur, err := s.Read(t.Context(), rotation.ReadRequest{Path: "token"})
	require.NoError(t, err)
	require.Equal(t, "hand-placed-token-0123456789", cur.Credential.Secret.Reveal())
	require.Empty(t, cur.RunID)

	v := storetest.Version(t, 1, storetest.RunID())
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "token", Version: v}))
	prev, err := s.Read(t.Context(), rotation.ReadRequest{Path: "token", Which: rotation.Previous})
	require.NoError(t, err)
	require.Equal(t, "hand-placed-token-0123456789", prev.Credential.Secret.Reveal())
	_, err = os.Stat(filepath.Join(dir, "token.previous.meta.json"))
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// A raw secret and metadata that disagree (a crash between the two renames)
// is reported without content, and the next publish repairs it without
// overwriting the previous version.
func TestRawInterruptedWrite(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatRaw)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "pw", Version: v1}))
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "pw", Version: v2}))
	v3 := storetest.Version(t, 3, storetest.RunID())
	// Simulate a crash of v3's publish after the secret, before the
	// metadata: the previous pair already holds v2.
	for _, name := range []string{"pw", "pw.meta.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, strings.Replace(name, "pw", "pw.previous", 1)), b, 0o600))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pw"), []byte(v3.Credential.Secret.Reveal()), 0o600))

	_, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: "pw"})
	require.ErrorContains(t, err, filepath.Join(dir, "pw"))
	require.ErrorContains(t, err, "publish again")
	require.NotContains(t, err.Error(), v3.Credential.Secret.Reveal())

	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "pw", Version: v3}))
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: "pw"})
	require.NoError(t, err)
	require.Equal(t, v3.RunID, d.Current.RunID)
	require.Equal(t, v2.RunID, d.Previous.RunID, "the repair keeps the previous version")
}

func TestPathRejected(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, "")
	outside := filepath.Dir(dir)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "link")))
	v := storetest.Version(t, 1, storetest.RunID())
	for _, p := range []string{"", ".", "..", "../x.json", "a/../../x.json", "/etc/passwd", "x.json.previous", "x.meta.json", "link/x.json"} {
		err := s.Publish(t.Context(), rotation.PublishRequest{Path: p, Version: v})
		require.Error(t, err, "path %q", p)
		require.True(t, rotation.IsPermanent(err), "path %q: %v", p, err)
		_, err = s.Read(t.Context(), rotation.ReadRequest{Path: p})
		require.Error(t, err, "path %q", p)
		require.False(t, errors.Is(err, rotation.ErrNotFound), "path %q must not read as merely empty: %v", p, err)
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing may be written outside the directory")
	// A path that climbs and comes back inside is fine.
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "a/../b.json", Version: v}))
	_, err = os.Stat(filepath.Join(dir, "b.json"))
	require.NoError(t, err)
}

func TestCorruptFile(t *testing.T) {
	t.Parallel()
	const leaked = "hunter2-do-not-print"
	for i, tc := range []struct {
		format, name, content string
	}{
		{files.FormatJSON, "app.json", `{"password": "` + leaked},
		{files.FormatJSON, "app.json", `["` + leaked + `"]`},
		{files.FormatJSON, "app.json", `{"api_key": "` + leaked + `"}`},
		{files.FormatJSON, "app.json", `{"password": "` + leaked + `", "port": 5432}`},
		{files.FormatRaw, "app.json.meta.json", `{"version": 1, "x": "` + leaked + `"`},
	} {
		t.Run(fmt.Sprint(tc.format, i), func(t *testing.T) {
			t.Parallel()
			s, dir := newStore(t, tc.format)
			require.NoError(t, os.MkdirAll(dir, 0o700))
			if tc.format == files.FormatRaw {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "app.json"), []byte(leaked), 0o600))
			}
			file := filepath.Join(dir, tc.name)
			require.NoError(t, os.WriteFile(file, []byte(tc.content), 0o600))
			_, derr := s.Describe(t.Context(), rotation.DescribeRequest{Path: "app.json"})
			_, rerr := s.Read(t.Context(), rotation.ReadRequest{Path: "app.json"})
			perr := s.Publish(t.Context(), rotation.PublishRequest{Path: "app.json", Version: storetest.Version(t, 1, storetest.RunID())})
			for _, err := range []error{derr, rerr, perr} {
				require.Error(t, err)
				require.ErrorContains(t, err, file)
				require.NotContains(t, err.Error(), leaked)
				require.NotContains(t, err.Error(), "hunter")
				require.True(t, rotation.IsPermanent(err))
			}
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			require.Equal(t, tc.content, string(b), "a corrupt file is left for a person to look at")
		})
	}
}

// A reader polling the file the way an application does never finds it
// missing or partial while versions are published and rolled back.
func TestReaderNeverSeesMissingFile(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			s, dir := newStore(t, format)
			file := filepath.Join(dir, "app", "secret")
			const n = 200
			versions := make([]rotation.Version, n)
			again := map[int]rotation.Version{} // republished after a rollback
			valid := map[string]bool{}
			for i := range versions {
				versions[i] = storetest.Version(t, int64(i+1), storetest.RunID())
				valid[versions[i].Credential.Secret.Reveal()] = true
				if i%10 == 1 {
					again[i] = storetest.Version(t, int64(i+1), storetest.RunID())
					valid[again[i].Credential.Secret.Reveal()] = true
				}
			}
			publish := func(v rotation.Version) {
				require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "app/secret", Version: v}))
			}
			publish(versions[0])

			stop := make(chan struct{})
			var reads int
			var readErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					reads++
					b, err := os.ReadFile(file)
					if err != nil {
						readErr = fmt.Errorf("read %d: %w", reads, err)
						return
					}
					sec := string(b)
					if format == files.FormatJSON {
						var d map[string]string
						if err := json.Unmarshal(b, &d); err != nil {
							readErr = fmt.Errorf("read %d: partial JSON (%d bytes)", reads, len(b))
							return
						}
						sec = d["password"]
					}
					if !valid[sec] {
						readErr = fmt.Errorf("read %d: %d bytes that are no published secret", reads, len(b))
						return
					}
				}
			})
			for i := 1; i < n; i++ {
				v := versions[i]
				publish(v)
				if w, ok := again[i]; ok { // roll back now and then, and publish again
					require.NoError(t, s.Rollback(t.Context(), rotation.RollbackRequest{Path: "app/secret", RunID: v.RunID}))
					publish(w)
				}
			}
			close(stop)
			wg.Wait()
			require.NoError(t, readErr)
			require.Positive(t, reads)
			// After three or more publishes the store also keeps the
			// version before the previous one (".prior.previous"), to put
			// .previous back if the newest publish is undone.
			requireOnly(t, filepath.Dir(file), append(onDisk(format, "secret"), priorOnDisk(format, "secret")...)...)
		})
	}
}

// onDisk names what the store keeps for a published file base: the
// current and previous slots and the (empty) lock file writers flock.
func onDisk(format, base string) []string {
	lock := "." + base + ".rotator-lock"
	if format == files.FormatRaw {
		return []string{base, base + ".meta.json", base + ".previous", base + ".previous.meta.json", lock}
	}
	return []string{base, base + ".previous", lock}
}

// priorOnDisk names the slot that keeps the version before .previous.
func priorOnDisk(format, base string) []string {
	if format == files.FormatRaw {
		return []string{base + ".prior.previous", base + ".prior.previous.meta.json"}
	}
	return []string{base + ".prior.previous"}
}

func requireMode(t *testing.T, name string) {
	t.Helper()
	fi, err := os.Stat(name)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), name)
}

// requireOnly checks dir holds exactly names (no temp files left behind).
func requireOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	require.ElementsMatch(t, names, got)
}

// A crash between creating a temp file and the rename leaves a plaintext
// secret in .<name>.rotator-tmp: the next write of that file removes it
// (and those of its .previous and .meta.json) without listing the
// directory. Temp files named as earlier versions named them
// (.<name>.rotator-tmp-<16 hex>) are swept once per directory and
// process when older than a minute; a younger one may be a live writer's
// and is left alone, as are names this store does not make.
func TestStaleTempFilesRemoved(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			s, dir := newStore(t, format)
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "db"), 0o700))
			leftovers := []string{
				".postgres.json.rotator-tmp",
				".postgres.json.previous.rotator-tmp",
			}
			legacy := []string{
				".postgres.json.rotator-tmp-0123456789abcdef",
				".other.json.rotator-tmp-0123456789abcdef", // another file's, from a writer that died
			}
			if format == files.FormatRaw {
				leftovers = append(leftovers, ".postgres.json.meta.json.rotator-tmp")
				legacy = append(legacy, ".postgres.json.meta.json.rotator-tmp-00112233445566ff")
			}
			keep := []string{
				".other.json.rotator-tmp-fedcba9876543210", // young: maybe a live writer's
				".postgres.json.rotator-tmp-notours",       // not a name this store makes
			}
			old := time.Now().Add(-2 * time.Minute)
			for _, n := range append(append(append([]string(nil), leftovers...), legacy...), keep...) {
				p := filepath.Join(dir, "db", n)
				require.NoError(t, os.WriteFile(p, []byte("plaintext-from-a-crashed-write"), 0o600))
				if n != keep[0] {
					require.NoError(t, os.Chtimes(p, old, old))
				}
			}
			for i := 1; i <= 2; i++ {
				v := storetest.Version(t, int64(i), storetest.RunID())
				require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "db/postgres.json", Version: v}))
			}
			requireOnly(t, filepath.Join(dir, "db"), append(onDisk(format, "postgres.json"), keep...)...)
		})
	}
}

// Putting back a failed run's publish (Discard) restores .previous too: it
// always holds the last version that was really current (issue 13,
// finding 5). A plain rollback keeps the rolled-back version as previous.
func TestRollbackOfAFailedPublishRestoresPrevious(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		s, _ := newStore(t, format)
		ctx := t.Context()
		v1, v2, v3 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID()), storetest.Version(t, 3, storetest.RunID())
		for _, v := range []rotation.Version{v1, v2, v3} {
			require.NoError(t, s.Publish(ctx, rotation.PublishRequest{Path: "db/postgres.json", Version: v}))
		}
		require.NoError(t, s.Rollback(ctx, rotation.RollbackRequest{Path: "db/postgres.json", RunID: v3.RunID, Discard: true}))
		d, err := s.Describe(ctx, rotation.DescribeRequest{Path: "db/postgres.json"})
		require.NoError(t, err)
		require.Equal(t, v2.RunID, d.Current.RunID, format)
		require.Equal(t, v1.RunID, d.Previous.RunID, "%s: .previous is the last really-current version, not the discarded one", format)
		// Again: nothing changes (idempotent).
		require.NoError(t, s.Rollback(ctx, rotation.RollbackRequest{Path: "db/postgres.json", RunID: v3.RunID, Discard: true}))
		d, err = s.Describe(ctx, rotation.DescribeRequest{Path: "db/postgres.json"})
		require.NoError(t, err)
		require.Equal(t, v2.RunID, d.Current.RunID, format)
		require.Equal(t, v1.RunID, d.Previous.RunID, format)

		// A plain rollback (the version was really current) keeps it as
		// previous.
		require.NoError(t, s.Rollback(ctx, rotation.RollbackRequest{Path: "db/postgres.json", RunID: v2.RunID}))
		d, err = s.Describe(ctx, rotation.DescribeRequest{Path: "db/postgres.json"})
		require.NoError(t, err)
		require.Equal(t, v1.RunID, d.Current.RunID, format)
		require.Equal(t, v2.RunID, d.Previous.RunID, format)
	}
}

func TestConformanceShared(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Shared(func(t *testing.T) (rotation.DocStore, string) {
		s, _ := newStore(t, files.FormatJSON)
		return s, "ai-tg-bot/prod.json"
	}))
}
