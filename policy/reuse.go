package policy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"unicode/utf8"
)

// What a daemon's reload needs besides LoadReusing: how much a load
// would reuse, told before loading (Reusable), and a way to get the
// policies in force back without keeping them decoded (Source).
//
// A reload that reuses most pieces (the edit of a few secrets) costs the
// File in force plus what changed; one that reuses little (the header
// changed, every line moved) costs two decoded Files at once (~50 MB each
// at 100,000 secrets). For the latter, the daemon drops the File in force
// before loading the new one, and keeps only its text, compressed (~1 MB
// for the same file), to parse it again should the new file be refused
// (docs/decisions.md, "A reload that reuses little drops the old policies
// first").

// Reusable is how many of f's secrets a load of data from f's file,
// given f (LoadReusing), would take from f instead of decoding them
// again: those of the pieces of data whose hash f's piece index holds.
// It reads the text only (no YAML is parsed): a load that then gives up
// the streamed loader (an error anywhere, the node budget) reuses
// nothing, whatever Reusable said. 0 when f was not loaded in pieces.
func (f *File) Reusable(data []byte) int {
	if f == nil || f.pieces == nil || len(data) < streamMin {
		return 0
	}
	// What parseStreamed refuses at once.
	if !utf8.Valid(data) || bytes.IndexByte(data, '\r') >= 0 || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return 0
	}
	blk, ok := findList(data)
	if !ok {
		return 0
	}
	header := headerKey(f.Path, f.dir, data[:blk.items[0]], data[blk.end:])
	if header != f.pieces.header {
		return 0
	}
	n := 0
	for first := 0; first < len(blk.items); first += streamChunk {
		count, text := blk.piece(data, first)
		sp, ok := f.pieces.pieces[pieceKey(header, blk.lines[first], blk.col(first), text)]
		if ok && sp.n == count && sp.first+sp.n <= len(f.Secrets) {
			n += sp.n
		}
	}
	return n
}

// Source is the text a File was loaded from, compressed (gzip), kept by
// a File loaded from a large file (streamMin bytes or more) by Load,
// LoadReusing or Parse. It holds no reference to the File: the File may
// be freed and parsed again from its Source.
type Source struct {
	name string
	gz   []byte
}

// Source is the text f was loaded from; nil when f does not keep it (a
// small file, or a File not made by Load, LoadReusing or Parse).
func (f *File) Source() *Source { return f.source }

// Size is the size of the compressed text in bytes.
func (s *Source) Size() int { return len(s.gz) }

// Parse parses the text again: the File it gives is equal to the one it
// was kept by (the same text, the same file name), its piece index and
// Source included.
func (s *Source) Parse() (*File, error) {
	zr, err := gzip.NewReader(bytes.NewReader(s.gz))
	if err != nil {
		return nil, fmt.Errorf("policies file %s kept in memory: %w", s.name, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("policies file %s kept in memory: %w", s.name, err)
	}
	f, _, err := parse(s.name, data, nil)
	if err != nil {
		return nil, err
	}
	f.source = s
	return f, nil
}

// keepSource sets f's Source to data, compressed, when data is large
// (streamMin bytes or more); f may be nil (a load that failed).
func keepSource(f *File, name string, data []byte) *File {
	if f == nil || len(data) < streamMin {
		return f
	}
	var b bytes.Buffer
	// BestSpeed: 14 MB of YAML at 100,000 secrets compresses to about
	// 1 MB in ~0.1 s; a better ratio is not worth the CPU of every load.
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	_, _ = zw.Write(data)
	_ = zw.Close()
	f.source = &Source{name: name, gz: bytes.Clone(b.Bytes())}
	return f
}

// SetPieceSizes sets the size (bytes) from which a file is loaded in
// pieces and keeps its Source, and how many secrets a piece holds; it
// returns what sets them back. It is for the tests of other packages (the
// daemon's reload of a large file, shown with a small one); nothing may
// load a file while it runs.
func SetPieceSizes(min, chunk int) (restore func()) {
	oldMin, oldChunk := streamMin, streamChunk
	streamMin, streamChunk = min, chunk
	return func() { streamMin, streamChunk = oldMin, oldChunk }
}
