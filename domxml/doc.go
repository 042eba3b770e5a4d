// Package domxml is vsh's typed model of libvirt XML: domains, networks,
// storage pools and storage volumes. Each parsed object keeps the
// schema.Document it came from, so writing it back returns the user's file
// (comments, attribute order, formatting) with only what vsh changed or
// added. Domains convert to the engine's hypervisor.Config; whatever the
// engine cannot run is reported with its line, never silently dropped.
package domxml

import (
	"bytes"
	"strings"

	"github.com/beevik/etree"

	"vsh/schema"
)

// source is the document behind a typed object together with what is needed
// to write it back faithfully.
type source struct {
	doc *schema.Document
	// orig is the user's bytes; base is etree's rendering of the document
	// as parsed. Comparing base with the current rendering tells which
	// lines vsh changed, and every other line is taken from orig.
	orig, base  []byte
	singleQuote bool
	dirty       bool
}

func newSource(doc *schema.Document, data []byte) source {
	s := source{doc: doc, orig: append([]byte(nil), data...)}
	s.singleQuote = bytes.Count(data, []byte("='")) >= bytes.Count(data, []byte(`="`))
	s.base = s.render()
	return s
}

// newBuiltSource wraps a document vsh built itself, indented like virsh.
func newBuiltSource(file string, kind schema.Kind, root *etree.Element) source {
	d := etree.NewDocument()
	d.SetRoot(root)
	d.IndentWithSettings(&etree.IndentSettings{Spaces: 2})
	d.WriteSettings.AttrSingleQuote = true
	data, err := d.WriteToBytes()
	if err == nil {
		if doc, err := schema.ParseKind(file, data, kind); err == nil {
			return newSource(doc, data)
		}
	}
	// Unreachable for the documents vsh builds; keep the tree regardless.
	doc := &schema.Document{Doc: d, File: file, Kind: kind}
	return source{doc: doc, orig: data, base: data, singleQuote: true}
}

func (s *source) root() *etree.Element { return s.doc.Doc.Root() }

func (s *source) render() []byte {
	d := s.doc.Doc
	d.WriteSettings.AttrSingleQuote = s.singleQuote
	b, err := d.WriteToBytes()
	if err != nil {
		return nil
	}
	return b
}

// xml returns the document: the original bytes when nothing changed, else
// the original lines wherever the rendering did not change.
func (s *source) xml() []byte {
	if !s.dirty {
		return append([]byte(nil), s.orig...)
	}
	cur := s.render()
	out := patchLines(s.orig, s.base, cur)
	if out == nil {
		return cur
	}
	return out
}

func (s *source) pos(e *etree.Element) schema.Pos {
	if e == nil {
		return schema.Pos{File: s.doc.File}
	}
	return s.doc.Pos(e)
}

// splitLines splits b after each newline, keeping the newlines.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.SplitAfter(string(b), "\n")
}

// lineOp is one step of a line edit script from a to b: a kept line
// (a and b set), a deleted line (b == -1) or an inserted line (a == -1).
type lineOp struct{ a, b int }

// maxDiffCells bounds the LCS table; larger changes are not diffed.
const maxDiffCells = 1 << 22

// lineDiff returns an edit script turning a into b, or nil when the changed
// middle is too large to diff cheaply.
func lineDiff(a, b []string) []lineOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	am, bm := a[pre:len(a)-suf], b[pre:len(b)-suf]
	n, m := len(am), len(bm)
	if n*m > maxDiffCells {
		return nil
	}
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if am[i] == bm[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	ops := make([]lineOp, 0, len(a)+m)
	for i := 0; i < pre; i++ {
		ops = append(ops, lineOp{i, i})
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && am[i] == bm[j]:
			ops = append(ops, lineOp{pre + i, pre + j})
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			ops = append(ops, lineOp{-1, pre + j})
			j++
		default:
			ops = append(ops, lineOp{pre + i, -1})
			i++
		}
	}
	for k := 0; k < suf; k++ {
		ops = append(ops, lineOp{len(a) - suf + k, len(b) - suf + k})
	}
	return ops
}

// patchLines writes cur, vsh's rendering of the edited document, taking
// every line it did not change from orig, the user's bytes. base is the
// rendering of the unedited document. orig and base are aligned first: a
// run of user lines that etree renders differently (a start tag spread over
// lines, other quoting or escaping) is a hunk, kept verbatim when vsh
// changed none of its rendered lines. It returns nil when a diff would be
// too large.
func patchLines(orig, base, cur []byte) []byte {
	o, b, c := splitLines(orig), splitLines(base), splitLines(cur)
	// CRLF line ends are the file's business, not a difference (the XML
	// parser reads them as LF).
	on := make([]string, len(o))
	for i, l := range o {
		on[i] = strings.Replace(l, "\r\n", "\n", 1)
	}
	align := lineDiff(on, b)
	edit := lineDiff(b, c)
	if align == nil || edit == nil {
		return nil
	}
	// Map each base line to its user line, or to the hunk holding it.
	origOf := make([]int, len(b))
	hunkOf := make([]int, len(b))
	type hunk struct {
		orig    []string
		base    int  // rendered lines in the hunk
		at      int  // for a hunk of user lines only: the base line after it
		intact  bool // no rendered line of the hunk changed
		emitted bool
	}
	var hunks []*hunk
	var userOnly []*hunk
	var h *hunk
	closeHunk := func(at int) {
		if h != nil && h.base == 0 {
			h.at = at
			userOnly = append(userOnly, h)
		}
		h = nil
	}
	for _, op := range align {
		if op.a >= 0 && op.b >= 0 {
			closeHunk(op.b)
			origOf[op.b], hunkOf[op.b] = op.a, -1
			continue
		}
		if h == nil {
			h = &hunk{intact: true}
			hunks = append(hunks, h)
		}
		if op.a >= 0 {
			h.orig = append(h.orig, o[op.a])
		}
		if op.b >= 0 {
			h.base++
			origOf[op.b], hunkOf[op.b] = -1, len(hunks)-1
		}
	}
	closeHunk(len(b))
	kept := make([]bool, len(b))
	for _, op := range edit {
		if op.a >= 0 && op.b >= 0 {
			kept[op.a] = true
		}
	}
	for j := range b {
		if k := hunkOf[j]; k >= 0 && !kept[j] {
			hunks[k].intact = false
		}
	}
	// Nor is a hunk intact when a line is inserted inside it.
	last := -1
	for _, op := range edit {
		if op.a >= 0 {
			last = op.a
			continue
		}
		if last >= 0 && last+1 < len(b) && hunkOf[last] >= 0 && hunkOf[last] == hunkOf[last+1] {
			hunks[hunkOf[last]].intact = false
		}
	}
	crlf := bytes.Contains(orig, []byte("\r\n"))
	added := func(l string) string {
		if crlf && strings.HasSuffix(l, "\n") && !strings.HasSuffix(l, "\r\n") {
			return l[:len(l)-1] + "\r\n"
		}
		return l
	}
	var out strings.Builder
	emit := func(h *hunk) {
		if !h.emitted {
			h.emitted = true
			for _, l := range h.orig {
				out.WriteString(l)
			}
		}
	}
	// User lines with no rendering (none in practice) keep their place
	// before the base line that follows them.
	flushBefore := func(j int) {
		for len(userOnly) > 0 && userOnly[0].at <= j {
			emit(userOnly[0])
			userOnly = userOnly[1:]
		}
	}
	for _, op := range edit {
		switch {
		case op.a >= 0 && op.b >= 0:
			flushBefore(op.a)
			if i := origOf[op.a]; i >= 0 {
				out.WriteString(o[i])
			} else if h := hunks[hunkOf[op.a]]; h.intact {
				emit(h)
			} else {
				out.WriteString(added(c[op.b]))
			}
		case op.b >= 0:
			out.WriteString(added(c[op.b]))
		default:
			flushBefore(op.a)
		}
	}
	flushBefore(len(b))
	return []byte(out.String())
}

// Element helpers. They edit the tree the way a person would: new elements
// go where libvirt puts them, indented like their siblings.

// childText returns the trimmed text of parent's first <tag> child.
func childText(parent *etree.Element, tag string) string {
	if parent == nil {
		return ""
	}
	if e := parent.SelectElement(tag); e != nil {
		return strings.TrimSpace(e.Text())
	}
	return ""
}

func attr(e *etree.Element, key string) string {
	if e == nil {
		return ""
	}
	return e.SelectAttrValue(key, "")
}

// indentOf returns the whitespace that precedes e on its line, or "" when e
// does not start a line.
func indentOf(e *etree.Element) string {
	p := e.Parent()
	if p == nil {
		return ""
	}
	i := e.Index()
	if i == 0 {
		return ""
	}
	cd, ok := p.Child[i-1].(*etree.CharData)
	if !ok || cd.IsCData() {
		return ""
	}
	nl := strings.LastIndexByte(cd.Data, '\n')
	if nl < 0 {
		return ""
	}
	ws := cd.Data[nl+1:]
	if strings.TrimSpace(ws) != "" {
		return ""
	}
	return ws
}

// childIndent returns the indentation of parent's children: that of an
// existing child element, else the parent's own plus two spaces.
func childIndent(parent *etree.Element) string {
	for _, c := range parent.ChildElements() {
		if ind := indentOf(c); ind != "" {
			return ind
		}
	}
	return indentOf(parent) + "  "
}

// insertChild inserts e into parent after the last child whose tag is in
// after (libvirt's order of the elements that precede e), or first when none
// is present, and indents it like its siblings.
func insertChild(parent, e *etree.Element, after ...string) {
	ind := childIndent(parent)
	var anchor *etree.Element
	for _, c := range parent.ChildElements() {
		for _, t := range after {
			if c.Tag == t {
				anchor = c
			}
		}
	}
	elems := parent.ChildElements()
	if len(elems) == 0 && onlyWhitespace(parent) {
		// Empty parent (<devices/> or <devices>  </devices>).
		for len(parent.Child) > 0 {
			parent.RemoveChildAt(0)
		}
		parent.AddChild(etree.NewText("\n" + ind))
		parent.AddChild(e)
		parent.AddChild(etree.NewText("\n" + indentOf(parent)))
		return
	}
	if !multiline(parent) {
		// <interface type='bridge'><source bridge='br0'/></interface>
		// stays on one line.
		at := 0
		if anchor != nil {
			at = anchor.Index() + 1
		}
		parent.InsertChildAt(at, e)
		return
	}
	if anchor != nil {
		// After the anchor's line: a comment trailing it stays with it.
		at := anchor.Index() + 1
		for at < len(parent.Child) {
			if _, ok := parent.Child[at].(*etree.Comment); ok {
				at++
				continue
			}
			if cd, ok := parent.Child[at].(*etree.CharData); ok && !cd.IsCData() && strings.TrimSpace(cd.Data) == "" && !strings.Contains(cd.Data, "\n") {
				at++
				continue
			}
			break
		}
		parent.InsertChildAt(at, e)
		parent.InsertChildAt(at, etree.NewText("\n"+ind))
		return
	}
	// First child: after the leading whitespace, followed by the same.
	at := 0
	if cd, ok := parent.Child[0].(*etree.CharData); ok && !cd.IsCData() && strings.TrimSpace(cd.Data) == "" {
		at = 1
	}
	parent.InsertChildAt(at, etree.NewText("\n"+ind))
	parent.InsertChildAt(at, e)
	if at == 0 {
		parent.InsertChildAt(0, etree.NewText("\n"+ind))
	}
}

// onlyWhitespace tells whether parent holds nothing but whitespace.
func onlyWhitespace(parent *etree.Element) bool {
	for _, t := range parent.Child {
		if cd, ok := t.(*etree.CharData); !ok || cd.IsCData() || strings.TrimSpace(cd.Data) != "" {
			return false
		}
	}
	return true
}

// multiline tells whether parent's children are on lines of their own.
func multiline(parent *etree.Element) bool {
	for _, t := range parent.Child {
		if cd, ok := t.(*etree.CharData); ok && !cd.IsCData() && strings.Contains(cd.Data, "\n") && strings.TrimSpace(cd.Data) == "" {
			return true
		}
	}
	return false
}

// removeElement removes e and the indentation before it.
func removeElement(e *etree.Element) {
	p := e.Parent()
	if p == nil {
		return
	}
	i := e.Index()
	if i > 0 {
		if cd, ok := p.Child[i-1].(*etree.CharData); ok && !cd.IsCData() && strings.TrimSpace(cd.Data) == "" {
			p.RemoveChildAt(i - 1)
		}
	}
	p.RemoveChild(e)
}

// ensureChild returns parent's <tag>, creating it after the elements named in
// after when absent.
func ensureChild(parent *etree.Element, tag string, after ...string) *etree.Element {
	if e := parent.SelectElement(tag); e != nil {
		return e
	}
	e := etree.NewElement(tag)
	insertChild(parent, e, after...)
	return e
}

// setText replaces e's text content, keeping its attributes.
func setText(e *etree.Element, text string) {
	for len(e.Child) > 0 {
		e.RemoveChildAt(0)
	}
	if text != "" {
		e.SetText(text)
	}
}

// setAttr sets key=value in place (keeping attribute order) or appends it.
func setAttr(e *etree.Element, key, value string) {
	if a := e.SelectAttr(key); a != nil {
		a.Value = value
		return
	}
	e.CreateAttr(key, value)
}

// describe renders an element for messages: "<graphics type='spice'>".
func describe(e *etree.Element) string {
	var b strings.Builder
	b.WriteString("<" + e.Tag)
	keys := []string{"type", "model", "name", "mode", "dev", "offset"}
	if e.Tag == "driver" {
		keys = []string{"type", "cache", "name"} // the disk format first
	}
	for _, k := range keys {
		if v := e.SelectAttrValue(k, ""); v != "" {
			b.WriteString(" " + k + "='" + v + "'")
			break
		}
	}
	b.WriteString(">")
	return b.String()
}
