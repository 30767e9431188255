package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// A large policies file is loaded in pieces, so that the whole node tree
// (and the position of every field) is never alive at once: about 3 KB of
// tree and 2 KB of positions per secret, 0.9 GB at the peak for 100,000
// secrets, against 47 MB for the decoded File (docs/performance.md).
//
// The streamed loader finds the top-level block list `secrets:` in the
// text, decodes everything else (the header) once, and then the list
// streamChunk items at a time: each piece is parsed on its own (its
// lines numbered as in the file), decoded, and validated together with
// the header as a file of its own. What only the whole list can tell is
// checked across pieces: duplicate ids, publish entries that write to
// one place (two secrets may share a document only when both own fields
// of it, different ones), and management_secret naming a secret of
// another piece (any of these that the whole loader would refuse gives
// up). It is a fast path and nothing more: whenever it meets
// anything it does not handle (a file that is not UTF-8, CRLF line ends
// or Unicode ones (plainText), an alias to an anchor in another piece) or
// any error at all, it gives up. The errors of a file that does not load are
// then found piece by piece too (streamedErrors, below), and where that
// cannot tell, the file is loaded whole (parseWhole), which gives the one
// answer the loader has, every error with its position. So a file it
// accepts is one the whole loader accepts, and the File is the same
// (FuzzLoad and TestStreamedLoadIsTheWholeLoad compare the two), and the
// errors it gives are the whole loader's (TestStreamedErrorsAreTheWholeLoaders).
//
// A validation rule that looks across secrets (like the three above) must
// be checked across pieces here too. (Giving up on a shared document or a
// management_secret in another piece cost the whole loader's memory and
// two loads more: 547 MB at 50,000 secrets, against 81 MB for token
// secrets, docs/performance.md.)

// streamMin is the size from which a file is loaded in pieces (a
// variable: the tests set it to 0).
var streamMin = 1 << 20

// streamChunk is how many secrets one piece holds (a variable: the fuzz
// test of reuse makes pieces small).
var streamChunk = 500

// errNoStream: the streamed loader gives up; the whole loader decides.
var errNoStream = errors.New("not streamed")

// secretsBlock is where the top-level `secrets:` block list stands in the
// file: its key's line and the byte offsets of its items.
type secretsBlock struct {
	keyLine int   // 0-based line of "secrets:"
	items   []int // byte offset of each item's first line
	lines   []int // 0-based line of each item's first line
	end     int   // byte offset just after the list
	// cols is the 1-based column of each item of a list in flow style
	// (flow.go), which starts where its item does, not at a line's
	// start; nil for a block list.
	cols []int
	// openLine (0-based) and openCol (1-based, in characters) are where
	// the '[' of a flow list stands.
	openLine, openCol int
}

// col is the column of item i of a flow list, 0 for a block list.
func (b secretsBlock) col(i int) int {
	if b.cols == nil {
		return 0
	}
	return b.cols[i]
}

// piece is the piece of the list that starts at item first (every
// streamChunk items): how many items it holds and its text in data, up
// to the next piece's first item (the last piece: to the list's end).
func (b secretsBlock) piece(data []byte, first int) (count int, text []byte) {
	last := min(first+streamChunk, len(b.items))
	end := b.end
	if last < len(b.items) {
		end = b.items[last]
	}
	return last - first, data[b.items[first]:end]
}

// findList finds the top-level secrets list, in block or flow style.
func findList(data []byte) (secretsBlock, bool) {
	if b, ok := findSecrets(data); ok {
		return b, true
	}
	return findFlowSecrets(data)
}

// findSecrets finds the block list under a top-level "secrets:" key.
func findSecrets(data []byte) (secretsBlock, bool) {
	var b secretsBlock
	b.keyLine = -1
	indent := -1
	line := 0
	for off := 0; off < len(data); line++ {
		nl := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if nl >= 0 {
			next = off + nl + 1
		}
		l := data[off:next]
		l = bytes.TrimSuffix(l, []byte("\n"))
		trimmed := bytes.TrimLeft(l, " ")
		ind := len(l) - len(trimmed)
		blank := len(trimmed) == 0 || trimmed[0] == '#'
		switch {
		case b.keyLine < 0:
			if ind == 0 && isSecretsKey(l) {
				b.keyLine = line
			}
		case b.end > 0:
			if ind == 0 && isSecretsKey(l) {
				return b, false // twice: the whole loader says so
			}
		case blank:
		case indent < 0:
			if !isItem(trimmed) {
				return b, false
			}
			indent = ind
			b.items, b.lines = append(b.items, off), append(b.lines, line)
		case ind == indent && isItem(trimmed):
			b.items, b.lines = append(b.items, off), append(b.lines, line)
		case ind > indent:
		case ind == 0 && indent > 0 || ind == 0 && !isItem(trimmed):
			b.end = off
		default:
			return b, false
		}
		off = next
	}
	if b.keyLine < 0 || len(b.items) == 0 {
		return b, false
	}
	if b.end == 0 {
		b.end = len(data)
	}
	return b, true
}

// isSecretsKey: the line is "secrets:" with nothing after it but blanks
// and a comment.
func isSecretsKey(l []byte) bool {
	rest, ok := bytes.CutPrefix(l, []byte("secrets:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '#'
}

// isItem: the line (indentation removed) starts a list item.
func isItem(t []byte) bool {
	return len(t) == 1 && t[0] == '-' || len(t) > 1 && t[0] == '-' && t[1] == ' '
}

// plainText: data is UTF-8 without a byte order mark whose lines end
// with \n only, as the pieces count them. The YAML parser also ends a
// line at \r, NEL, LS and PS (U+0085, U+2028, U+2029): the lines of
// everything after one would be off (TestStreamedUnicodeLineBreaks).
func plainText(data []byte) bool {
	return utf8.Valid(data) && bytes.IndexByte(data, '\r') < 0 && !bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) &&
		!bytes.Contains(data, []byte("\u0085")) && !bytes.Contains(data, []byte("\u2028")) && !bytes.Contains(data, []byte("\u2029"))
}

// oneDocument parses data as exactly one YAML document and returns its
// root (nil for an empty document).
func oneDocument(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, errNoStream
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return nil, errNoStream
}

// shiftLines moves every node of a piece parsed on its own to its line in
// the file.
func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}

// A reload of a large file decodes only the pieces that changed: a File
// loaded in pieces keeps a hash of each piece (pieceIndex), and a load
// given that File (prev) takes the secrets of a piece whose hash it finds
// from prev instead of parsing, decoding and validating them again; the
// two Files share those SecretSpecs, which nothing writes after a load.
//
// A piece's hash covers what its secrets and its validation depend on:
// the file name and directory (positions, Ref.Dir), the text of the file
// around the list (the header: defaults, classes and stores apply to every
// secret, so any change there means nothing is reused), the line the
// piece starts at (every SecretSpec holds the positions of its fields: a
// piece moved to other lines is decoded again) and the piece's text. A
// piece is parsed on its own, so an alias in it names an anchor in it
// (else the piece fails and the whole loader decides): it is inside the
// hash. What looks across pieces (duplicate ids, publish entries writing
// to one place and the fields of shared documents, management_secret
// naming a secret of another piece, the node budget, from each piece's
// recorded count) is checked over the whole new file, reused pieces
// included. So a File loaded reusing prev equals a File loaded without it
// (TestStreamedLoadReuses, FuzzLoadReuse, TestStreamedLoadAcrossPiecesGivesUp).

// pieceIndex is what a File loaded in pieces keeps for the next load of
// the file: where each piece's secrets stand, by the piece's hash.
type pieceIndex struct {
	header [sha256.Size]byte
	pieces map[[sha256.Size]byte]pieceSpan
}

// pieceSpan is one piece: its secrets are File.Secrets[first:first+n], and
// decoding them counted nodes nodes.
type pieceSpan struct {
	first, n, nodes int
}

// headerKey hashes what every piece of a file depends on besides its own
// text: the name, the directory and the text around the list.
func headerKey(name, dir string, before, after []byte) [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{[]byte(name), []byte(dir), before, after} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// pieceKey hashes one piece: the header's key, its first line and column
// and its text.
func pieceKey(header [sha256.Size]byte, line, col int, text []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(header[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(line))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(col))
	h.Write(n[:])
	h.Write(text)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// parseStreamed loads data in pieces (see above); errNoStream when the
// whole loader must decide. nodes counts the nodes decoded, as the whole
// loader does. prev, when not nil, is a File loaded before: the pieces of
// data that it holds unchanged are taken from it.
func parseStreamed(name, dir string, data []byte, prev *File) (_ *File, nodes int, _ error) {
	if !plainText(data) {
		return nil, 0, errNoStream
	}
	blk, ok := findList(data)
	if !ok {
		return nil, 0, errNoStream
	}
	hf, hd, err := streamHeader(name, dir, data, blk)
	if err != nil || len(hd.errs) > 0 || hd.over != nil {
		return nil, 0, errNoStream
	}
	nodes = hd.nodes

	idx := &pieceIndex{header: headerKey(name, dir, data[:blk.items[0]], data[blk.end:]),
		pieces: make(map[[sha256.Size]byte]pieceSpan, (len(blk.items)+streamChunk-1)/streamChunk)}
	var old map[[sha256.Size]byte]pieceSpan
	if prev != nil && prev.pieces != nil && prev.pieces.header == idx.header {
		old = prev.pieces.pieces
	}
	secrets := make([]*SecretSpec, 0, len(blk.items))
	// fresh: the first secret of each piece decoded here (not reused),
	// whose defaults are filled at the end.
	var fresh []int
	// What each cron schedule's check says, for every piece (a year of
	// firings each: checked once per piece, it was ~0.1 ms a secret).
	crons := map[string]string{}
	ids := map[string]bool{}
	// targets: each place published to, and whether its entry owns fields
	// of a shared document; owned: each field of a shared document owned,
	// and each secret publishing into one (the validator's owners,
	// publishTargets), both as targetIDs. A collision of two ids can only
	// give up, never take a file the whole loader refuses.
	targets := map[targetID]bool{}
	owned := map[targetID]bool{}
	own := func(key, field string) bool {
		k := idOf(key + "\x00" + field)
		if owned[k] {
			return false
		}
		owned[k] = true
		return true
	}
	for first := 0; first < len(blk.items); first += streamChunk {
		count, text := blk.piece(data, first)
		key := pieceKey(idx.header, blk.lines[first], blk.col(first), text)
		var piece []*SecretSpec
		sp, ok := old[key]
		if ok && sp.n == count && sp.first+sp.n <= len(prev.Secrets) && nodes+sp.nodes < Budget(len(data)) {
			// Unchanged since prev: its secrets as decoded, validated
			// and filled then.
			piece = prev.Secrets[sp.first : sp.first+sp.n]
			nodes += sp.nodes
			idx.pieces[key] = pieceSpan{first: first, n: sp.n, nodes: sp.nodes}
		} else {
			var n int
			piece, n, _, err = parsePiece(name, dir, data, text, blk.lines[first], blk.col(first), hf, hd, nodes, first, count, nil, crons)
			nodes += n
			if err != nil {
				return nil, nodes, err
			}
			idx.pieces[key] = pieceSpan{first: first, n: len(piece), nodes: n}
			fresh = append(fresh, first)
		}
		// Across pieces: what the validator checks across the list.
		for _, s := range piece {
			if ids[s.ID] {
				return nil, nodes, errNoStream
			}
			ids[s.ID] = true
			for _, pub := range s.Publish {
				key := "name\x00" + pub.Store + "\x00" + pub.Path
				if store, ok := hf.Store(pub.Store); ok {
					if t, ok := hf.publishTarget(store, pub); ok {
						key = t.key
					}
				}
				shared := len(pub.Fields) > 0
				if fields, dup := targets[idOf(key)]; dup && !(fields && shared) {
					return nil, nodes, errNoStream
				}
				targets[idOf(key)] = shared
				if !shared {
					continue
				}
				if !own(key, rotationMetaPrefix+"id\x00"+s.ID) {
					return nil, nodes, errNoStream
				}
				for _, f := range pub.Fields {
					if !own(key, f) {
						return nil, nodes, errNoStream
					}
				}
			}
		}
		secrets = append(secrets, piece...)
	}
	// A management_secret is looked up in its piece by the validator
	// (validator.laterLookups); here among every secret of the file,
	// reused pieces included.
	for _, s := range secrets {
		if h := s.Rotator.HTTPAPI; h != nil && h.ManagementSecret != "" && !ids[h.ManagementSecret] {
			return nil, nodes, errNoStream
		}
	}
	hf.Secrets = secrets
	hf.fillHeaderDefaults()
	for _, first := range fresh {
		for _, s := range secrets[first:min(first+streamChunk, len(secrets))] {
			hf.fillSecretDefaults(s)
		}
	}
	hf.Hash = Hash(data)
	hf.pieces = idx
	return hf, nodes, nil
}

// streamHeader decodes the text of data around the secrets list (blk) as
// a file of its own, the list's lines left empty so that every other line
// keeps its number; hd is its decoder, with its errors.
func streamHeader(name, dir string, data []byte, blk secretsBlock) (*File, *decoder, error) {
	header := make([]byte, 0, len(data)-(blk.end-blk.items[0])+bytes.Count(data[blk.items[0]:blk.end], []byte("\n")))
	header = append(header, data[:blk.items[0]]...)
	// The text after a flow list may follow it on its last line: that
	// line's characters are kept as spaces, one per character, so that
	// what follows keeps its column.
	keep := blk.end
	if blk.cols != nil {
		keep = max(blk.items[0], bytes.LastIndexByte(data[:blk.end], '\n')+1)
	}
	for i, c := range data[blk.items[0]:blk.end] {
		switch {
		case c == '\n':
			header = append(header, '\n')
		case blk.items[0]+i >= keep && !utf8.RuneStart(c):
		case blk.items[0]+i >= keep:
			header = append(header, ' ')
		}
	}
	header = append(header, data[blk.end:]...)
	root, err := oneDocument(header)
	if err != nil || root == nil || root.Kind != yaml.MappingNode {
		return nil, nil, errNoStream
	}
	if aliasIntoList(root, data[blk.items[0]:blk.end]) {
		return nil, nil, errNoStream
	}
	// The list found in the text must be the value of the secrets key the
	// parser sees: text like it in a comment or a quoted scalar is not
	// (the key is then elsewhere, TestListHiddenInACommentOrScalar). The
	// text before the list is the file's, so a node of the header at the
	// list's place is the file's node there.
	found := 0
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k, v := root.Content[i], root.Content[i+1]; k.Kind == yaml.ScalarNode && k.Value == "secrets" {
			found++
			switch {
			case blk.cols != nil && (v.Line != blk.openLine+1 || v.Column != blk.openCol):
				return nil, nil, errNoStream
			case blk.cols == nil && (k.Line != blk.keyLine+1 || k.Column != 1):
				return nil, nil, errNoStream
			case blk.cols != nil && v.Kind == yaml.SequenceNode && v.Style == yaml.FlowStyle && len(v.Content) == 0:
				// A flow list emptied: where it stands already.
			case blk.cols == nil && v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "":
				// The list is decoded piece by piece; the header holds an
				// empty one where it stands.
				root.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: blk.lines[0] + 1, Column: v.Column}
			default:
				return nil, nil, errNoStream
			}
		}
	}
	if found != 1 {
		return nil, nil, errNoStream
	}
	hd := newDecoder(name, dir, len(data))
	hf := &File{Path: name, dir: dir}
	hd.structure(root, reflect.ValueOf(hf).Elem(), "")
	return hf, hd, nil
}

// aliasIntoList: an alias of the header names an anchor that the list
// text defines too. An alias names the last anchor of its name before
// it: in the file, one in the list; in the header, an earlier one
// (TestStreamedAnchorRedefinedInTheList).
func aliasIntoList(n *yaml.Node, list []byte) bool {
	if n.Kind == yaml.AliasNode && bytes.Contains(list, []byte("&"+n.Value)) {
		return true
	}
	for _, c := range n.Content {
		if aliasIntoList(c, list) {
			return true
		}
	}
	return false
}

// parsePiece parses, decodes and validates the n secrets of one piece
// (text, starting at 0-based line line of data, at column col for a flow
// list, 0 for a block list; the first is secret base
// of the file) with the header hf (hd its decoder), nodes having been
// counted before it; errNoStream when the whole loader must decide. With
// x (streamedErrors), what the validator checks across the list is
// carried from piece to piece in x, and the piece's errors are returned;
// without it any error is errNoStream. crons is the validator's cache of
// cron checks, shared by the pieces of one load.
func parsePiece(name, dir string, data, text []byte, line, col int, hf *File, hd *decoder, nodes, base, n int, x *across, crons map[string]string) (_ []*SecretSpec, counted int, _ ErrorList, _ error) {
	doc := text
	if col > 0 {
		// A piece of a flow list: a sequence of its own, its text from
		// the second line.
		doc = make([]byte, 0, len(text)+4)
		doc = append(append(append(doc, "[\n"...), text...), "\n]"...)
	}
	list, err := oneDocument(doc)
	if err != nil || list == nil || list.Kind != yaml.SequenceNode || len(list.Content) != n {
		return nil, 0, nil, errNoStream
	}
	if col > 0 {
		shiftPiece(list, line-1, col-1)
	} else {
		shiftLines(list, line)
	}
	d := newDecoder(name, dir, len(data))
	d.budget -= nodes
	for k, p := range hd.pos {
		d.pos[k] = p
	}
	for k, p := range hd.keyPos {
		d.keyPos[k] = p
	}
	for k := range hd.bad {
		d.bad[k] = true
	}
	piece := make([]*SecretSpec, len(list.Content))
	for i, item := range list.Content {
		d.decode(item, reflect.ValueOf(&piece[i]).Elem(), fmt.Sprintf("secrets[%d]", base+i))
		if piece[i] == nil {
			return nil, d.nodes, nil, errNoStream
		}
	}
	if d.over != nil || len(d.errs) > 0 && x == nil {
		return nil, d.nodes, nil, errNoStream
	}
	pf := *hf
	pf.Secrets = piece
	v := &validator{d: d, f: &pf, base: base, x: x, onlySecrets: x != nil && base > 0, laterLookups: x == nil, crons: crons}
	v.validate()
	if len(d.errs) > 0 && x == nil {
		return nil, d.nodes, nil, errNoStream
	}
	return piece, d.nodes, d.errs, nil
}

// A large file that does not load is answered piece by piece too
// (streamedErrors): the whole loader holds the node tree and the position
// of every field of the file at once (0.9 GB for 100,000 secrets with one
// mistake, docs/performance.md), where a piece holds its own. Each piece is
// decoded and validated with the header, as parseStreamed does, but its
// errors are kept (its secrets are not), and what the validator checks
// across the list (ids used twice, publish entries that write to one
// place, the fields of a shared document, management_secret naming a
// secret in another piece) is carried from piece to piece in an across,
// with the position of each first use. The errors are then the ones the
// whole loader gives, in its order (TestStreamedErrorsAreTheWholeLoaders,
// FuzzLoad). What the streamed loader does not handle (syntax errors, an
// alias to an anchor in another piece, a file over the node budget, the
// layouts parseStreamed gives up on) is still the whole loader's.

// streamedErrors returns the errors of data found piece by piece, and the
// nodes decoded; ok is false when the whole loader must decide. No error
// with ok: the file is valid (and the streamed loader gave up for another
// reason).
func streamedErrors(name, dir string, data []byte) (_ ErrorList, nodes int, ok bool) {
	if !plainText(data) {
		return nil, 0, false
	}
	blk, ok := findList(data)
	if !ok {
		return nil, 0, false
	}
	hf, hd, err := streamHeader(name, dir, data, blk)
	if err != nil || hd.over != nil {
		return nil, 0, false
	}
	errs := append(ErrorList(nil), hd.errs...)
	nodes = hd.nodes
	x := newAcross()
	x.other = map[string]bool{}
	crons := map[string]string{}
	for first := 0; first < len(blk.items); first += streamChunk {
		count, text := blk.piece(data, first)
		_, n, perrs, err := parsePiece(name, dir, data, text, blk.lines[first], blk.col(first), hf, hd, nodes, first, count, x, crons)
		nodes += n
		if err != nil {
			return nil, nodes, false
		}
		// The first piece gives the header's errors too; the others
		// validate their secrets only (validator.onlySecrets).
		errs = append(errs, perrs...)
	}
	// A management_secret naming a secret of another piece: its error,
	// given in its piece, is dropped.
	found := map[*Error]bool{}
	for _, l := range x.lookups {
		if _, ok := x.ids.seen[l.id]; ok || x.other[l.id] {
			found[l.err] = true
		}
	}
	errs = slices.DeleteFunc(errs, func(e *Error) bool { return found[e] })
	return errs.sorted(), nodes, true
}
