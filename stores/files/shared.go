package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/rotator/rotator/rotation"
)

var _ rotation.DocStore = (*Store)(nil)

// docRev is the revision of a file's content: a hash of its bytes, ""
// for no file.
func docRev(b []byte) string {
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ReadDoc returns the file's JSON object and a hash of its bytes as the
// revision (rotation.DocStore); nil and "" when there is no file. Only the
// json format holds a shared document.
func (s *Store) ReadDoc(ctx context.Context, path string) (map[string]string, string, error) {
	if s.format != FormatJSON {
		return nil, "", rotation.Permanent(fmt.Errorf("files store %s: a shared document needs format json", s.dir))
	}
	rel, err := s.rel(path)
	if err != nil {
		return nil, "", err
	}
	var d map[string]string
	var rev string
	err = s.readStable(ctx, rel, func(root *os.Root) error {
		b, err := root.ReadFile(rel)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return s.ioErr("read", s.abs(rel), err)
		}
		if d, err = decodeData(b); err != nil {
			return s.corrupt(rel, err)
		}
		rev = docRev(b)
		return nil
	})
	return d, rev, err
}

// WriteDoc replaces the file with doc (atomically, mode 0600) if its
// content still hashes to rev, compared under the exclusive flock every
// rotator writer takes (rotation.DocStore): otherwise an error matching
// rotation.ErrDocConflict. A person's editor takes no flock: its write is
// seen if it lands before the compare, and may be lost if it lands between
// the compare and the rename (milliseconds).
func (s *Store) WriteDoc(ctx context.Context, path string, doc map[string]string, rev string) error {
	if s.format != FormatJSON {
		return rotation.Permanent(fmt.Errorf("files store %s: a shared document needs format json", s.dir))
	}
	root, rel, release, err := s.openForWrite(ctx, path)
	if err != nil {
		return err
	}
	defer release()
	b, err := root.ReadFile(rel)
	if errors.Is(err, fs.ErrNotExist) {
		b = nil
	} else if err != nil {
		return s.ioErr("read", s.abs(rel), err)
	}
	if docRev(b) != rev {
		return fmt.Errorf("files store %s: the file changed since it was read: %w", s.abs(rel), rotation.ErrDocConflict)
	}
	out, err := encodeData(doc)
	if err != nil {
		return err
	}
	if err := s.writeAtomic(root, rel, out); err != nil {
		return err
	}
	s.log.Info("files store: wrote shared document", "file", s.abs(rel))
	return nil
}

// Where names the document for messages (rotation.DocStore).
func (s *Store) Where(path string) string {
	if rel, err := s.rel(path); err == nil {
		return "files store " + s.abs(rel)
	}
	return "files store " + s.dir + " " + path
}
