// Package files is the rotation.Store that publishes secrets as files in a
// directory, laid out as Docker secrets and Kubernetes volume mounts are:
// one file per secret, which applications read from disk.
//
// Configuration is a policy.FilesSpec. Validate checks it at load time; New
// resolves a relative dir against the directory of the policies file and
// touches nothing until the first write, which creates the directory (and
// any directories inside it that a path names) with mode 0700.
//
// # Layout on disk
//
// The publish path is a relative path inside the directory
// (db/postgres.json). Absolute paths, paths that leave the directory after
// cleaning, and paths ending in a name the store keeps beside a file
// (.previous, .meta.json, and .prior: p.prior.previous is p's prior slot)
// are refused with a Permanent error. All file
// operations go through an os.Root opened on the directory, so a symlink
// inside it cannot lead a write outside either.
//
// For a path p the store keeps:
//
//	p                       the current version
//	p.previous              the version that was current before it
//	p.meta.json             (raw format) metadata of p
//	p.previous.meta.json    (raw format) metadata of p.previous
//	p.prior.previous        what p.previous held before the latest publish
//	.<p>.rotator-lock       an empty file writers and readers flock
//	.<p>.rotator-withdrawn  the runs whose version a failed run's
//	                        compensation withdrew from p (newest first,
//	                        at most 16): a publish of one is refused
//	                        (rotation.Withdrawn), since it can only be a
//	                        delayed request of a process that lost its lease
//
// Every file is mode 0600, owned by the rotator's user: run the
// applications that read them as the same user (or share the volume with a
// matching fsGroup/uid), since group and other get no access.
//
// # Formats
//
// json (the default): p is a JSON object of rotation.Version.Data(), keys
// sorted, two-space indented, with a trailing newline:
//
//	{
//	  "database": "app",
//	  "fingerprint": "3f9a1c0b7e22",
//	  "host": "db.internal",
//	  "password": "...",
//	  "port": "5432",
//	  "rotated_at": "2026-03-01T02:00:00Z",
//	  "run_id": "...",
//	  "username": "app_green",
//	  "version": "7"
//	}
//
// raw: p holds the secret value alone, byte for byte, with no trailing
// newline, for applications that read a password file (POSTGRES_PASSWORD_FILE
// and the like). The rest of Data (everything but the secret) is in
// p.meta.json in the same JSON form. A raw secret with no .meta.json beside
// it (put there by hand before the first rotation) is read as a version
// with no number or run id; the first publish keeps it as p.previous.
//
// Describe and Read parse what they find with rotation.ParseData. A file
// that does not parse is a Permanent error naming the file and saying what
// is wrong with it (a byte offset, a field name), never its content; it is
// left in place for a person to fix or remove.
//
// # Atomicity
//
// Each file is replaced atomically: a temp file (.<name>.rotator-tmp) in
// the same directory is written, fsynced and chmodded 0600, renamed over
// the file, and the directory is fsynced. A reader sees the old content or
// the new one, never a missing or partial file. Writers hold the path's
// exclusive lock, so the temp name is one per file; the one a crashed
// writer left (it holds a plaintext secret) is removed by the next write
// of that file, without listing the directory. Temp files named as
// earlier versions named them (.<name>.rotator-tmp-<16 hex>) are swept
// once per directory and process when older than a minute.
//
// Publish copies the current content to p.previous (atomically) before it
// renames the new version over p, so p never goes missing and a crash
// between the two steps leaves the old version in both places; the retried
// publish, whose run id is not yet current, completes it. Publish does
// nothing when p already holds the version's run id.
//
// Rollback(RunID) acts only when p holds RunID: it writes the previous
// content over p first, then the rolled-back content over p.previous. A
// crash between the two leaves the restored version in both places, and a
// second Rollback (the run is no longer current) changes nothing. With no
// p.previous, Rollback fails with an error wrapping rotation.ErrNotFound
// and leaves p alone.
//
// In the raw format a version is two files (the secret, then its metadata,
// each written atomically). The metadata carries the secret's fingerprint,
// so a pair that disagrees is detected: Read and Describe re-read it a few
// times (another process may be between the two renames) and then report
// it; a Publish finding it repairs it by writing the new version without
// touching p.previous, which was written before the interrupted write began.
//
// Every call on a path holds its lock: an in-process mutex and a flock on
// .<p>.rotator-lock (exclusive for Publish and Rollback, shared for Read
// and Describe), so concurrent publishes never interleave, in one process
// or several, and Describe sees the current and previous files of one
// moment. The flock is tried without blocking, again every few
// milliseconds while the caller's context allows, so a process paused
// while holding it delays the others only up to their action deadline.
//
// # The fence
//
// Publish with an expectation (rotation.PublishRequest.Expect: the run id
// the engine observed as current) compares it with the run id of p under
// the exclusive flock and writes in the same critical section: a stale
// process, whose observation another process has overtaken, is refused
// (rotation.ErrStoreMoved, naming the file and both run ids) and changes
// nothing. A publish whose version is already current stays a no-op
// success. Rollback is fenced by its run id the same way.
//
// Stage and Abort do nothing (they check the path): files have no pending
// label, and a staged file would be one more copy of a secret on disk that
// no application reads. Describe never reports Pending.
//
// # How applications read it
//
// Read the file whenever a connection is made (or on a change notification
// and at a short interval), not once at start: after a rotation the old
// credential stays valid until the grace period ends, then it is retired.
//
// Kubernetes: mount the directory (a hostPath, a shared emptyDir in the
// rotator's pod, or a PersistentVolume) into the application's pod. The
// rename is seen at once through a directory mount; a subPath mount of a
// single file is pinned to the inode it first saw and never sees a rename,
// so mount the directory, not the file. Docker: bind-mount the directory
// read-only into the container.
//
// An application that can hold two credentials may also read p.previous
// to keep working with the old one until it is retired; the fingerprint
// field (or in raw format, the one in p.meta.json) says which version it
// holds without revealing it, for the rotator's client checks.
package files
