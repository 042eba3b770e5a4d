package schema

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"
)

// fastParse builds the etree document and the start-tag spans in one pass
// over the common subset of XML that libvirt documents use: elements,
// attributes, text with the five predefined entities, comments, CDATA and
// processing instructions, in UTF-8. It builds exactly the tree etree's own
// reader would (tested by TestFastParseMatchesEtree and FuzzFastParse). On
// anything outside that subset, malformed or not (a DOCTYPE, a character
// reference, a stray control character), it returns ok=false and the caller
// takes the slower encoding/xml path, which also positions syntax errors.
func fastParse(data []byte) (doc *etree.Document, spans []elemSpan, ok bool) {
	if !utf8.Valid(data) || bytes.IndexByte(data, '\r') >= 0 ||
		bytes.Contains(data, []byte("\xef\xbf\xbe")) || bytes.Contains(data, []byte("\xef\xbf\xbf")) {
		return nil, nil, false
	}
	for _, c := range data {
		if c < 0x20 && c != '\n' && c != '\t' {
			return nil, nil, false
		}
	}
	p := fastParser{data: data, src: string(data)}
	p.spans = make([]elemSpan, 0, bytes.Count(data, []byte("<"))) // an upper bound
	doc = etree.NewDocument()
	doc.ReadSettings.PreserveCData = true
	doc.ReadSettings.PreserveDuplicateAttrs = true
	if !p.parse(doc) {
		return nil, nil, false
	}
	return doc, p.spans, true
}

type fastParser struct {
	data  []byte
	src   string // data as one string: names and values are slices of it
	i     int
	spans []elemSpan
}

func (p *fastParser) parse(doc *etree.Document) bool {
	stack := []*etree.Element{&doc.Element}
	roots := 0
	data := p.data
	for p.i < len(data) {
		top := stack[len(stack)-1]
		if data[p.i] != '<' {
			j := bytes.IndexByte(data[p.i:], '<')
			if j < 0 {
				j = len(data) - p.i
			}
			raw := data[p.i : p.i+j]
			text, ok := p.decode(p.i, p.i+j)
			p.i += j
			if bytes.Contains(raw, []byte("]]>")) {
				return false
			}
			if !ok {
				return false
			}
			if len(stack) == 1 && !isSpace(text) {
				return false
			}
			cd := top.CreateText(text)
			cd.SetData(text) // sets etree's whitespace flag like its reader
			continue
		}
		rest := data[p.i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			end := bytes.Index(rest[4:], []byte("-->"))
			if end < 0 {
				return false
			}
			body := rest[4 : 4+end]
			if bytes.Contains(body, []byte("--")) || bytes.HasSuffix(body, []byte("-")) {
				return false
			}
			top.CreateComment(p.src[p.i+4 : p.i+4+end])
			p.i += 4 + end + 3
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			if len(stack) == 1 {
				return false
			}
			end := bytes.Index(rest[9:], []byte("]]>"))
			if end < 0 {
				return false
			}
			top.CreateCData(p.src[p.i+9 : p.i+9+end])
			p.i += 9 + end + 3
		case bytes.HasPrefix(rest, []byte("<?")):
			end := bytes.Index(rest, []byte("?>"))
			if end < 0 {
				return false
			}
			body := string(rest[2:end])
			n := nameLen([]byte(body))
			if n == 0 || (n < len(body) && !isSpaceByte(body[n])) {
				return false
			}
			target, inst := body[:n], strings.TrimLeft(body[n:], " \t\n")
			if strings.EqualFold(target, "xml") {
				// The declaration: only version 1.0 in UTF-8 here.
				if target != "xml" || p.i != 0 || strings.Contains(inst, "encoding") && !utf8Decl(inst) ||
					!strings.Contains(inst, "version") || !(strings.Contains(inst, `"1.0"`) || strings.Contains(inst, "'1.0'")) {
					return false
				}
			}
			top.CreateProcInst(target, inst)
			p.i += end + 2
		case bytes.HasPrefix(rest, []byte("<!")):
			return false // DOCTYPE and other declarations
		case bytes.HasPrefix(rest, []byte("</")):
			n := nameLen(rest[2:])
			if n == 0 || len(stack) == 1 {
				return false
			}
			name := p.src[p.i+2 : p.i+2+n]
			j := 2 + n
			for j < len(rest) && isSpaceByte(rest[j]) {
				j++
			}
			if j >= len(rest) || rest[j] != '>' {
				return false
			}
			if fullName(top) != name {
				return false
			}
			stack = stack[:len(stack)-1]
			p.i += j + 1
		default:
			if len(stack) == 1 {
				roots++
				if roots > 1 {
					return false
				}
			}
			e, selfClosing, ok := p.startTag(top)
			if !ok {
				return false
			}
			if !selfClosing {
				stack = append(stack, e)
			}
		}
	}
	return len(stack) == 1 && roots == 1
}

// startTag parses "<name attr='v' ...>" at p.i and creates the element.
func (p *fastParser) startTag(parent *etree.Element) (*etree.Element, bool, bool) {
	start := p.i
	data := p.data
	i := p.i + 1
	n := nameLen(data[i:])
	if n == 0 {
		return nil, false, false
	}
	e := parent.CreateElement(p.src[i : i+n])
	i += n
	// Size the attribute list once instead of growing it attribute by
	// attribute: count the '=' signs outside quoted values.
	if na := countAttrs(data[i:]); na > 0 {
		e.Attr = slices.Grow(e.Attr, na)
	}
	for {
		sp := i
		for i < len(data) && isSpaceByte(data[i]) {
			i++
		}
		if i >= len(data) {
			return nil, false, false
		}
		switch data[i] {
		case '>':
			p.i = i + 1
			p.spans = append(p.spans, elemSpan{start: start, end: p.i})
			// Size the child list: a leaf holds one text token.
			if j := bytes.IndexByte(data[p.i:], '<'); j >= 0 && p.i+j+1 < len(data) && data[p.i+j+1] == '/' {
				e.Child = slices.Grow(e.Child, 1)
			} else {
				e.Child = slices.Grow(e.Child, 4)
			}
			return e, false, true
		case '/':
			if i+1 >= len(data) || data[i+1] != '>' {
				return nil, false, false
			}
			p.i = i + 2
			p.spans = append(p.spans, elemSpan{start: start, end: p.i})
			return e, true, true
		}
		if sp == i {
			return nil, false, false // attributes must be separated by space
		}
		an := nameLen(data[i:])
		if an == 0 {
			return nil, false, false
		}
		key := p.src[i : i+an]
		i += an
		for i < len(data) && isSpaceByte(data[i]) {
			i++
		}
		if i >= len(data) || data[i] != '=' {
			return nil, false, false
		}
		i++
		for i < len(data) && isSpaceByte(data[i]) {
			i++
		}
		if i >= len(data) || (data[i] != '"' && data[i] != '\'') {
			return nil, false, false
		}
		q := data[i]
		end := bytes.IndexByte(data[i+1:], q)
		if end < 0 {
			return nil, false, false
		}
		raw := data[i+1 : i+1+end]
		if bytes.IndexByte(raw, '<') >= 0 {
			return nil, false, false
		}
		val, ok := p.decode(i+1, i+1+end)
		if !ok {
			return nil, false, false
		}
		space, local, found := strings.Cut(key, ":")
		if !found {
			space, local = "", key
		}
		for _, a := range e.Attr {
			if a.Space == space && a.Key == local {
				return nil, false, false // repeated attribute: let the slow path report it
			}
		}
		e.CreateAttr(key, val)
		i += end + 2
	}
}

// countAttrs counts the attributes of a start tag from just after its name
// to its closing '>' (an estimate used for sizing; it never errs high by
// more than the quoted '=' signs it skips).
func countAttrs(b []byte) int {
	n := 0
	var quote byte
	for _, c := range b {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			n++
		case c == '>':
			return n
		}
	}
	return n
}

// fullName is the element's name as written ("prefix:local").
func fullName(e *etree.Element) string {
	if e.Space == "" {
		return e.Tag
	}
	return e.Space + ":" + e.Tag
}

// nameLen returns the length of the XML name (ASCII subset, at most one
// colon, not at either end) at the start of s, or 0.
func nameLen(s []byte) int {
	colons := 0
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case (c >= '0' && c <= '9' || c == '-' || c == '.') && i > 0:
		case c == ':' && i > 0:
			colons++
		default:
			goto done
		}
	}
done:
	if i == 0 || colons > 1 || s[i-1] == ':' {
		return 0
	}
	if i < len(s) && s[i] >= 0x80 {
		return 0 // a non-ASCII name character: leave it to encoding/xml
	}
	return i
}

// decode returns the text of data[from:to] with entities replaced, as a
// slice of src when there are none.
func (p *fastParser) decode(from, to int) (string, bool) {
	if bytes.IndexByte(p.data[from:to], '&') < 0 {
		return p.src[from:to], true
	}
	return decodeEntities(p.data[from:to])
}

// decodeEntities replaces the five predefined entities; anything else after
// '&' (character references included) makes it fail.
func decodeEntities(raw []byte) (string, bool) {
	if bytes.IndexByte(raw, '&') < 0 {
		return string(raw), true
	}
	var b strings.Builder
	for len(raw) > 0 {
		j := bytes.IndexByte(raw, '&')
		if j < 0 {
			b.Write(raw)
			break
		}
		b.Write(raw[:j])
		raw = raw[j:]
		semi := bytes.IndexByte(raw, ';')
		if semi < 0 {
			return "", false
		}
		switch string(raw[1:semi]) {
		case "lt":
			b.WriteByte('<')
		case "gt":
			b.WriteByte('>')
		case "amp":
			b.WriteByte('&')
		case "apos":
			b.WriteByte('\'')
		case "quot":
			b.WriteByte('"')
		default:
			return "", false
		}
		raw = raw[semi+1:]
	}
	return b.String(), true
}

func utf8Decl(inst string) bool {
	l := strings.ToLower(inst)
	return strings.Contains(l, `encoding="utf-8"`) || strings.Contains(l, `encoding='utf-8'`)
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpaceByte(s[i]) {
			return false
		}
	}
	return true
}
