package policy

import (
	"bytes"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// A secrets list in flow style is loaded in pieces too: a file generated
// as JSON (`{"secrets": [{...}, {...}]}`, pretty-printed or on one line)
// or a YAML file whose `secrets:` holds `[{...}, {...}]`. The whole
// loader holds the node tree of such a file at once (~970 MB for 100,000
// secrets), as it did for a block list. findFlowSecrets finds the list by
// following the flow syntax as far as splitting needs: quoted scalars,
// comments, and the nesting of brackets and braces. Each item must be a
// flow mapping (`{...}`); anything else, or anything the scanner does not
// follow, leaves the file to the whole loader. Each piece is parsed as a
// document of its own, `[` on its first line and the items' text from the
// next, so that every line but the first item's keeps its columns; the
// nodes of that line are moved to the item's column (shiftPiece). The
// fuzz tests compare what the pieces give with the whole loader on every
// input, flow files included (testdata holds many).

// cursor walks the text of a policies file, keeping the 0-based line and
// the 1-based column (in characters, as the YAML parser counts) of off.
type cursor struct {
	data            []byte
	off, line, col  int
	prevTokenBreak  bool // the last character was a space, a line end or a flow indicator
	prevSpaceOrLine bool // the last character was a space or a line end
}

func newCursor(data []byte) *cursor {
	return &cursor{data: data, col: 1, prevTokenBreak: true, prevSpaceOrLine: true}
}

func (c *cursor) done() bool { return c.off >= len(c.data) }

func (c *cursor) peek() byte { return c.data[c.off] }

// next moves past one character.
func (c *cursor) next() {
	b := c.data[c.off]
	if b == '\n' {
		c.off++
		c.line++
		c.col = 1
	} else {
		_, size := utf8.DecodeRune(c.data[c.off:])
		c.off += size
		c.col++
	}
	c.prevSpaceOrLine = b == ' ' || b == '\t' || b == '\n'
	c.prevTokenBreak = c.prevSpaceOrLine || bytes.IndexByte([]byte("[]{},:"), b) >= 0
}

// blank moves past spaces, tabs, line ends and comments.
func (c *cursor) blank() {
	for !c.done() {
		switch b := c.peek(); {
		case b == ' ' || b == '\t' || b == '\n':
			c.next()
		case b == '#' && c.prevSpaceOrLine:
			for !c.done() && c.peek() != '\n' {
				c.next()
			}
		default:
			return
		}
	}
}

// quoted moves past a quoted scalar starting at off ('"' or '\”); false
// when it does not end.
func (c *cursor) quoted() bool {
	q := c.peek()
	c.next()
	for !c.done() {
		b := c.peek()
		switch {
		case q == '"' && b == '\\':
			c.next()
			if c.done() {
				return false
			}
		case b == q && q == '\'' && c.off+1 < len(c.data) && c.data[c.off+1] == '\'':
			c.next() // '' is a quote inside a single-quoted scalar
		case b == q:
			c.next()
			return true
		}
		c.next()
	}
	return false
}

// collection moves past a flow collection starting at off ('[' or '{')
// and everything in it; false when it does not end.
func (c *cursor) collection() bool {
	depth := 0
	for !c.done() {
		b := c.peek()
		switch {
		case (b == '"' || b == '\'') && c.prevTokenBreak:
			if !c.quoted() {
				return false
			}
			continue
		case b == '#' && c.prevSpaceOrLine:
			c.blank()
			continue
		case b == '[' || b == '{':
			depth++
		case b == ']' || b == '}':
			depth--
			if depth == 0 {
				c.next()
				return true
			}
		}
		c.next()
	}
	return false
}

// flowList reads the items of the flow sequence whose '[' is at c: each
// one must be a flow mapping. It fills b's items, lines, cols and end.
func (c *cursor) flowList(b *secretsBlock) bool {
	b.openLine, b.openCol = c.line, c.col
	c.next() // '['
	for {
		c.blank()
		if c.done() {
			return false
		}
		if c.peek() == ']' {
			return len(b.items) > 0
		}
		if c.peek() != '{' {
			return false
		}
		b.items, b.lines, b.cols = append(b.items, c.off), append(b.lines, c.line), append(b.cols, c.col)
		if !c.collection() {
			return false
		}
		b.end = c.off
		c.blank()
		if c.done() {
			return false
		}
		switch c.peek() {
		case ',':
			c.next()
			b.end = c.off // a trailing comma goes with the last item
		case ']':
			return true
		default:
			return false
		}
	}
}

// findFlowSecrets finds a top-level secrets list in flow style: the value
// of "secrets:" at the start of a line of a block mapping, or of the key
// secrets of a file that is one flow mapping (JSON).
func findFlowSecrets(data []byte) (secretsBlock, bool) {
	b := secretsBlock{keyLine: -1}
	c := newCursor(data)
	c.blank()
	if c.done() {
		return b, false
	}
	if c.peek() != '{' {
		// A block mapping: "secrets:" at the start of a line, then "[".
		for line, off := 0, 0; off < len(data); line++ {
			next := len(data)
			if nl := bytes.IndexByte(data[off:], '\n'); nl >= 0 {
				next = off + nl + 1
			}
			if rest, ok := bytes.CutPrefix(data[off:next], []byte("secrets:")); ok {
				t := bytes.TrimLeft(rest, " ")
				if len(t) == 0 || t[0] != '[' {
					return b, false
				}
				b.keyLine = line
				c := &cursor{data: data, off: next - len(t), line: line, col: 1 + len("secrets:") + len(rest) - len(t)}
				// In a block mapping the parser refuses a line of the
				// list that starts with a tab after a plain scalar; a
				// piece has no indentation to violate
				// (TestFlowListTabAfterPlainScalar).
				return b, c.flowList(&b) && !bytes.Contains(data[b.items[0]:b.end], []byte("\n\t"))
			}
			off = next
		}
		return b, false
	}
	// One flow mapping: its keys, until secrets.
	c.next()
	for {
		c.blank()
		if c.done() || c.peek() == '}' {
			return b, false
		}
		keyLine := c.line
		var key []byte
		switch c.peek() {
		case '"', '\'':
			start := c.off
			if !c.quoted() {
				return b, false
			}
			key = data[start+1 : c.off-1]
		case '[', '{', '?', '&', '*', '!', ',', ':':
			return b, false
		default:
			start := c.off
			for !c.done() && c.peek() != ':' && c.peek() != '\n' && bytes.IndexByte([]byte("[]{},#"), c.peek()) < 0 {
				c.next()
			}
			key = bytes.TrimRight(data[start:c.off], " \t")
		}
		c.blank()
		if c.done() || c.peek() != ':' {
			return b, false
		}
		c.next()
		c.blank()
		if c.done() {
			return b, false
		}
		if string(key) == "secrets" {
			b.keyLine = keyLine
			return b, c.peek() == '[' && c.flowList(&b)
		}
		switch c.peek() {
		case '[', '{':
			if !c.collection() {
				return b, false
			}
		case '"', '\'':
			if !c.quoted() {
				return b, false
			}
		default:
			for !c.done() && bytes.IndexByte([]byte(",}[]{\n"), c.peek()) < 0 {
				c.next()
			}
		}
		c.blank()
		if c.done() || c.peek() != ',' {
			return b, false
		}
		c.next()
	}
}

// shiftPiece moves the nodes of a flow piece, parsed as "[\n" and its
// text, to their place in the file: every line by lines, and the nodes of
// the piece's first line of text (line 2) by cols columns.
func shiftPiece(n *yaml.Node, lines, cols int) {
	if n.Line == 2 {
		n.Column += cols
	}
	n.Line += lines
	for _, c := range n.Content {
		shiftPiece(c, lines, cols)
	}
}
