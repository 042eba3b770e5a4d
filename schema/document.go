package schema

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"
)

// Kind is the kind of libvirt object a document describes; the root element
// decides it.
type Kind int

// The four kinds of document vsh understands.
const (
	KindDomain Kind = iota
	KindNetwork
	KindPool
	KindVolume
)

var kindRoots = []string{"domain", "network", "pool", "volume"}

// String returns the root element name of the kind: "domain", "network",
// "pool" or "volume".
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindRoots) {
		return kindRoots[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// KindOf returns the kind whose root element is named root.
func KindOf(root string) (Kind, bool) {
	for i, r := range kindRoots {
		if r == root {
			return Kind(i), true
		}
	}
	return 0, false
}

// Pos is a position in a source file. Line and Col are 1-based; Col counts
// characters (runes), not bytes.
type Pos struct {
	File      string
	Line, Col int
}

// String formats the position as "file:line:col", leaving out parts that are
// unknown.
func (p Pos) String() string {
	file := p.File
	if file == "" {
		file = "<input>"
	}
	switch {
	case p.Line == 0:
		return file
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", file, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Col)
}

// before reports whether p sorts before q (same file assumed).
func (p Pos) before(q Pos) bool {
	if p.File != q.File {
		return p.File < q.File
	}
	if p.Line != q.Line {
		return p.Line < q.Line
	}
	return p.Col < q.Col
}

// Error is one problem found in a document, at a position.
type Error struct {
	Pos Pos
	Msg string
}

// Error returns "file:line:col: message".
func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList is every problem found in a document, sorted by position. A
// non-empty ErrorList is an error.
type ErrorList []*Error

// Error joins the errors' texts with newlines.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns l as an error, or nil when l is empty (avoiding a non-nil
// interface holding a nil list).
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// sort orders the list by position, keeping the discovery order of errors at
// the same position.
func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		switch {
		case a.Pos.before(b.Pos):
			return -1
		case b.Pos.before(a.Pos):
			return 1
		}
		return 0
	})
}

// Document is a parsed libvirt XML document: the etree document (comments,
// attribute order and whitespace kept, so it can be written back), the file
// name used in positions, the kind chosen by the root element, and the source
// position of every element that was in the parsed text. A Document is not
// safe for concurrent use.
type Document struct {
	Doc  *etree.Document
	File string
	Kind Kind

	src   []byte
	lines []int                       // byte offset of the start of each line, computed on first use
	spans []elemSpan                  // start tags in document order
	elems []*etree.Element            // parsed elements in document order
	pos   map[*etree.Element]elemSpan // built from spans on first use

	warnings ErrorList
}

// elemSpan is the byte range of an element's start tag in the source.
type elemSpan struct {
	start, end int
}

// Parse parses a libvirt XML document. Malformed XML yields an ErrorList with
// the parser's position; a root element other than <domain>, <network>,
// <pool> or <volume> is an error naming the allowed roots. file is only used
// in positions.
func Parse(file string, data []byte) (*Document, error) {
	d := &Document{File: file, src: data}
	if doc, spans, ok := fastParse(data); ok {
		return d.finish(doc, spans)
	}
	doc := etree.NewDocument()
	doc.ReadSettings.PreserveCData = true
	doc.ReadSettings.PreserveDuplicateAttrs = true
	doc.ReadSettings.CharsetReader = charsetReader
	// Fast path: etree parses, a byte scanner finds the start tags. Only
	// when something is wrong does the strict (slower) encoding/xml pass
	// run, to report the problem with its position.
	var spans []elemSpan
	if err := doc.ReadFromBytes(data); err != nil || !wellFormedTree(doc) {
		var err error
		if spans, err = d.scan(); err != nil {
			return nil, err
		}
		return nil, ErrorList{{Pos: Pos{File: file}, Msg: "malformed XML"}}
	}
	root := doc.Root()
	spans = scanStartTags(data)
	if len(spans) != countElements(root) {
		// The byte scanner was confused (a DTD internal subset, say);
		// fall back to the decoder.
		var err error
		if spans, err = d.scan(); err != nil {
			return nil, err
		}
	}
	return d.finish(doc, spans)
}

// finish pairs the parsed elements with their start-tag spans and decides
// the kind.
func (d *Document) finish(doc *etree.Document, spans []elemSpan) (*Document, error) {
	d.Doc = doc
	d.spans = spans
	root := doc.Root()
	// Remember the parsed elements in document order now, before anyone
	// edits the tree; they pair with spans.
	d.elems = make([]*etree.Element, 0, len(spans))
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		d.elems = append(d.elems, e)
		for _, t := range e.Child {
			if c, ok := t.(*etree.Element); ok {
				walk(c)
			}
		}
	}
	walk(root)

	name := root.Tag
	if root.Space != "" {
		name = root.Space + ":" + root.Tag
	}
	kind, ok := KindOf(name)
	if !ok || root.Space != "" {
		return nil, ErrorList{{Pos: d.Pos(root), Msg: fmt.Sprintf("root element <%s> is not one of <domain>, <network>, <pool>, <volume>", name)}}
	}
	d.Kind = kind
	return d, nil
}

// ParseKind parses a document that must be of kind want, failing like
// libvirt ("expecting root element of 'domain', not 'network'") otherwise.
func ParseKind(file string, data []byte, want Kind) (*Document, error) {
	d, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	if d.Kind != want {
		return nil, ErrorList{{Pos: d.Pos(d.Doc.Root()), Msg: fmt.Sprintf("expecting root element of '%s', not '%s'", want, d.Kind)}}
	}
	return d, nil
}

// scan makes one strict pass over the text with encoding/xml, recording the
// start tag span of every element in document order.
func (d *Document) scan() ([]elemSpan, error) {
	dec := xml.NewDecoder(bytes.NewReader(d.src))
	dec.Strict = true
	dec.CharsetReader = charsetReader
	var spans []elemSpan
	var open []string // names of the open elements
	var openAt []int  // their start offsets
	depth, roots := 0, 0
	for {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if err == io.EOF {
			if roots == 0 {
				return nil, ErrorList{{Pos: d.offsetPos(len(d.src)), Msg: "malformed XML: document has no root element"}}
			}
			return spans, nil
		}
		if err != nil {
			msg := xmlErrText(err)
			if msg == "unexpected EOF" && len(open) > 0 {
				at := d.offsetPos(openAt[len(open)-1])
				msg = fmt.Sprintf("premature end of data: element <%s> opened at line %d is not closed", open[len(open)-1], at.Line)
			}
			return nil, ErrorList{{Pos: d.errPos(dec, err), Msg: "malformed XML: " + msg}}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return nil, ErrorList{{Pos: d.offsetPos(off), Msg: fmt.Sprintf("malformed XML: extra element <%s> after the root element", t.Name.Local)}}
				}
			}
			depth++
			for i, a := range t.Attr {
				for _, b := range t.Attr[:i] {
					if a.Name == b.Name {
						return nil, ErrorList{{Pos: d.offsetPos(off), Msg: fmt.Sprintf("malformed XML: attribute %s is repeated in <%s>", a.Name.Local, t.Name.Local)}}
					}
				}
			}
			spans = append(spans, elemSpan{start: off, end: int(dec.InputOffset())})
			open = append(open, t.Name.Local)
			openAt = append(openAt, off)
		case xml.EndElement:
			depth--
			open = open[:len(open)-1]
			openAt = openAt[:len(openAt)-1]
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, ErrorList{{Pos: d.offsetPos(off), Msg: "malformed XML: text outside the root element"}}
			}
		}
	}
}

// charsetReader accepts the encodings that are UTF-8 already.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q (only UTF-8 is supported)", charset)
}

// wellFormedTree checks what etree lets through: exactly one root element,
// no text outside it, no repeated attribute.
func wellFormedTree(doc *etree.Document) bool {
	roots := 0
	for _, t := range doc.Child {
		switch t := t.(type) {
		case *etree.Element:
			roots++
		case *etree.CharData:
			if strings.TrimSpace(t.Data) != "" {
				return false
			}
		}
	}
	if roots != 1 {
		return false
	}
	ok := true
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		for i := 1; i < len(e.Attr) && ok; i++ {
			for j := 0; j < i; j++ {
				if e.Attr[i].Space == e.Attr[j].Space && e.Attr[i].Key == e.Attr[j].Key {
					ok = false
				}
			}
		}
		for _, c := range e.Child {
			if ce, isElem := c.(*etree.Element); isElem && ok {
				walk(ce)
			}
		}
	}
	walk(doc.Root())
	return ok
}

func countElements(e *etree.Element) int {
	n := 1
	for _, c := range e.Child {
		if ce, ok := c.(*etree.Element); ok {
			n += countElements(ce)
		}
	}
	return n
}

// scanStartTags finds the start tags of well-formed XML in document order
// by looking at the bytes: it skips comments, CDATA sections, processing
// instructions, declarations and end tags, and quoted attribute values.
func scanStartTags(data []byte) []elemSpan {
	var spans []elemSpan
	skipTo := func(i int, end string) int {
		j := bytes.Index(data[i:], []byte(end))
		if j < 0 {
			return len(data)
		}
		return i + j + len(end)
	}
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '<')
		if j < 0 {
			break
		}
		i += j
		rest := data[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			i = skipTo(i+4, "-->")
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			i = skipTo(i+9, "]]>")
		case bytes.HasPrefix(rest, []byte("<?")):
			i = skipTo(i+2, "?>")
		case bytes.HasPrefix(rest, []byte("<!")):
			// A DOCTYPE; an internal subset makes the count disagree
			// and the caller falls back to the decoder.
			i = skipTo(i+2, ">")
		case bytes.HasPrefix(rest, []byte("</")):
			i = skipTo(i+2, ">")
		default:
			start := i
			var quote byte
			for i++; i < len(data); i++ {
				c := data[i]
				if quote != 0 {
					if c == quote {
						quote = 0
					}
				} else if c == '"' || c == '\'' {
					quote = c
				} else if c == '>' {
					i++
					break
				}
			}
			spans = append(spans, elemSpan{start: start, end: i})
		}
	}
	return spans
}

// errPos is the position of a decoder error: the decoder's current line and
// column.
func (d *Document) errPos(dec *xml.Decoder, err error) Pos {
	p := d.offsetPos(int(dec.InputOffset()))
	var se *xml.SyntaxError
	if errors.As(err, &se) && se.Line != p.Line {
		p = Pos{File: d.File, Line: se.Line}
	}
	return p
}

// xmlErrText strips encoding/xml's "XML syntax error on line N: " prefix;
// the position is reported separately.
func xmlErrText(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return se.Msg
	}
	return err.Error()
}

func lineStarts(data []byte) []int {
	lines := []int{0}
	for i, c := range data {
		if c == '\n' {
			lines = append(lines, i+1)
		}
	}
	return lines
}

// offsetPos converts a byte offset into a line and column.
func (d *Document) offsetPos(off int) Pos {
	if d.lines == nil {
		d.lines = lineStarts(d.src) // only needed once something is reported
	}
	if off > len(d.src) {
		off = len(d.src)
	}
	line, _ := slices.BinarySearch(d.lines, off+1)
	// line is the index of the first line start > off; the line containing
	// off is the one before it.
	start := d.lines[line-1]
	return Pos{File: d.File, Line: line, Col: utf8.RuneCount(d.src[start:off]) + 1}
}

// positions maps the parsed elements to their start tags: the parser saw
// the same elements in the same (document) order. The map is built on
// first use, since a valid document may never need a position.
func (d *Document) positions() map[*etree.Element]elemSpan {
	if d.pos != nil {
		return d.pos
	}
	d.pos = make(map[*etree.Element]elemSpan, len(d.elems))
	for i, e := range d.elems {
		if i < len(d.spans) {
			d.pos[e] = d.spans[i]
		}
	}
	return d.pos
}

// Pos returns the start-tag position of e. For an element that was not in
// the parsed text (added later), it returns the position of its nearest
// ancestor that was.
func (d *Document) Pos(e *etree.Element) Pos {
	for ; e != nil; e = e.Parent() {
		if s, ok := d.positions()[e]; ok {
			return d.offsetPos(s.start)
		}
	}
	return Pos{File: d.File}
}

// AttrPos returns the position of attribute name in e's start tag, or the
// element's position when it cannot be located.
func (d *Document) AttrPos(e *etree.Element, name string) Pos {
	s, ok := d.positions()[e]
	if !ok {
		return d.Pos(e)
	}
	tag := d.src[s.start:s.end]
	for i := 1; i < len(tag); {
		j := bytes.Index(tag[i:], []byte(name))
		if j < 0 {
			break
		}
		at := i + j
		before := tag[at-1]
		rest := bytes.TrimLeft(tag[at+len(name):], " \t\r\n")
		if (before == ' ' || before == '\t' || before == '\n' || before == '\r') && len(rest) > 0 && rest[0] == '=' {
			return d.offsetPos(s.start + at)
		}
		i = at + len(name)
	}
	return d.Pos(e)
}

// Validate parses data and validates it; malformed XML and an unknown root
// are reported like validation errors.
func Validate(file string, data []byte) ErrorList {
	d, err := Parse(file, data)
	if err != nil {
		var l ErrorList
		if errors.As(err, &l) {
			return l
		}
		return ErrorList{{Pos: Pos{File: file}, Msg: err.Error()}}
	}
	return d.Validate()
}
