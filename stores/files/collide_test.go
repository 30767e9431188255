package files_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
)

// TestNoPathSharesAnotherPathsFiles: the files a path keeps beside it
// (.previous, .prior.previous, .meta.json, their temporary files) are
// written under that path's lock only, so no other publish path may name
// one of them. "app" keeps app.prior.previous while it publishes, which is
// also the .previous of a path "app.prior": such a path is refused, or
// each path's previous version stays its own.
func TestNoPathSharesAnotherPathsFiles(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t, format)
			ctx := t.Context()
			v := func(n int64) rotation.Version { return storetest.Version(t, n, storetest.RunID()) }
			a1, a2, a3 := v(1), v(2), v(3)
			b1, b2 := v(11), v(12)
			publish := func(p string, v rotation.Version) error {
				return s.Publish(ctx, rotation.PublishRequest{Path: p, Version: v})
			}
			require.NoError(t, publish("app", a1))
			require.NoError(t, publish("app", a2))
			if err := publish("app.prior", b1); err != nil {
				require.True(t, rotation.IsPermanent(err), "a refused path is refused for good: %v", err)
				require.ErrorContains(t, err, "app.prior")
				return
			}
			require.NoError(t, publish("app.prior", b2))
			require.NoError(t, publish("app", a3)) // keeps app.previous (a2) as app.prior.previous
			d, err := s.Describe(ctx, rotation.DescribeRequest{Path: "app.prior"})
			require.NoError(t, err)
			require.Equal(t, b2.RunID, d.Current.RunID)
			require.NotNil(t, d.Previous)
			require.Equal(t, b1.RunID, d.Previous.RunID, "app.prior's previous version was replaced by app's")
		})
	}
}

// TestTempNameTakenByALinkOrDirectory: what a person or another program
// put at a write's temporary name (.<name>.rotator-tmp) is not followed:
// a symlink there is removed, never written through (its target, outside
// the store, stays as it was); a directory there is not emptied or
// followed (the write fails and names it, or removes it if empty).
func TestTempNameTakenByALinkOrDirectory(t *testing.T) {
	t.Parallel()
	for _, format := range []string{files.FormatJSON, files.FormatRaw} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			s, dir := newStore(t, format)
			ctx := t.Context()
			const p = "db/app.json"
			v := func(n int64) rotation.Version { return storetest.Version(t, n, storetest.RunID()) }
			require.NoError(t, s.Publish(ctx, rotation.PublishRequest{Path: p, Version: v(1)}))

			outside := filepath.Join(t.TempDir(), "victim")
			require.NoError(t, os.WriteFile(outside, []byte("keep me"), 0o644))
			for _, name := range []string{".app.json.rotator-tmp", ".app.json.previous.rotator-tmp", ".app.json.meta.json.rotator-tmp"} {
				require.NoError(t, os.Symlink(outside, filepath.Join(dir, "db", name)))
			}
			require.NoError(t, s.Publish(ctx, rotation.PublishRequest{Path: p, Version: v(2)}))
			b, err := os.ReadFile(outside)
			require.NoError(t, err)
			require.Equal(t, "keep me", string(b))
			fi, err := os.Lstat(outside)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

			// A directory with something in it.
			full := filepath.Join(dir, "db", ".app.json.rotator-tmp")
			require.NoError(t, os.MkdirAll(filepath.Join(full, "sub"), 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(full, "sub", "f"), []byte("x"), 0o600))
			err = s.Publish(ctx, rotation.PublishRequest{Path: p, Version: v(3)})
			require.Error(t, err)
			require.ErrorContains(t, err, ".app.json.rotator-tmp")
			_, err = os.Stat(filepath.Join(full, "sub", "f"))
			require.NoError(t, err, "a directory at the temporary name is not emptied")
			d, err := s.Describe(ctx, rotation.DescribeRequest{Path: p})
			require.NoError(t, err)
			require.Equal(t, int64(2), d.Current.Number, "the failed write changed nothing")
		})
	}
}

// TestYoungLegacyTempSweptOnceOld: a temporary file named as earlier
// versions named them, too young to remove at the first write to its
// directory (it may be a live writer's), is removed by a later write of
// the same process once it is old enough: a daemon that runs for months
// does not keep a dead writer's plaintext because it first saw it young.
func TestYoungLegacyTempSweptOnceOld(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatJSON)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "db"), 0o700))
	young := filepath.Join(dir, "db", ".other.json.rotator-tmp-0123456789abcdef")
	require.NoError(t, os.WriteFile(young, []byte("plaintext-from-a-crashed-write"), 0o600))
	publish := func(n int64) {
		v := storetest.Version(t, n, storetest.RunID())
		require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: "db/postgres.json", Version: v}))
	}
	publish(1)
	_, err := os.Stat(young)
	require.NoError(t, err, "young: maybe a live writer's, left alone")
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(young, old, old)) // its writer is dead and it is old now
	publish(2)
	_, err = os.Stat(young)
	require.ErrorIs(t, err, fs.ErrNotExist, "the dead writer's temporary file is swept once it is old")
}
