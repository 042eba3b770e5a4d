package schema

import (
	"fmt"
	"slices"
	"strings"

	"github.com/beevik/etree"
)

// An elemRule says what one element may contain: attributes, child elements
// (in any order: libvirt's content models are mostly interleaves of optional
// elements), and text.
type elemRule struct {
	name      string
	attrs     map[string]*attrRule
	attrList  []string // declaration order, for messages
	children  map[string]*childRule
	childList []string
	text      *valueType // nil: only whitespace allowed
	anyBody   bool       // any attributes, text and elements (metadata)
	includes  []string   // fragments merged in at link time
	linked    bool
}

type attrRule struct {
	name     string
	typ      *valueType
	required bool
}

type childRule struct {
	rule     *elemRule
	min, max int // max < 0: unbounded
}

func newElemRule(name string) *elemRule {
	return &elemRule{name: name, attrs: map[string]*attrRule{}, children: map[string]*childRule{}}
}

func (r *elemRule) addAttr(a *attrRule) {
	if _, ok := r.attrs[a.name]; !ok {
		r.attrList = append(r.attrList, a.name)
	}
	r.attrs[a.name] = a
}

func (r *elemRule) addChild(c *childRule) {
	if _, ok := r.children[c.rule.name]; !ok {
		r.childList = append(r.childList, c.rule.name)
	}
	r.children[c.rule.name] = c
}

// validator walks a document against a rule table, collecting errors.
type validator struct {
	d      *Document
	errs   ErrorList
	warns  ErrorList
	depth  int
	counts []map[string]int // per nesting depth, reused between elements
}

// warnf records something libvirt accepts but silently changes or that is
// probably a mistake.
func (v *validator) warnf(e *etree.Element, format string, args ...any) {
	v.warns = append(v.warns, &Error{Pos: v.d.Pos(e), Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) errorf(e *etree.Element, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: v.d.Pos(e), Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) attrErrorf(e *etree.Element, attr string, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: v.d.AttrPos(e, attr), Msg: fmt.Sprintf(format, args...)})
}

// knownNamespaces maps libvirt's extension namespaces to the prefixes rule
// tables use for them.
var knownNamespaces = map[string]string{
	"http://libvirt.org/schemas/domain/qemu/1.0":     "qemu",
	"http://libvirt.org/schemas/domain/lxc/1.0":      "lxc",
	"http://libvirt.org/schemas/domain/bhyve/1.0":    "bhyve",
	"http://libvirt.org/schemas/domain/xen/1.0":      "xen",
	"http://libvirt.org/schemas/domain/vmware/1.0":   "vmware",
	"http://libvirt.org/schemas/network/dnsmasq/1.0": "dnsmasq",
	"http://libvirt.org/schemas/storagepool/fs/1.0":  "fs",
	"http://libvirt.org/schemas/storagepool/rbd/1.0": "rbd",
}

// elemName is the name rules use for e: the local name, or "ns:name" for
// elements in one of libvirt's extension namespaces, named by the
// namespace's conventional prefix whatever prefix the document uses.
func elemName(e *etree.Element) string {
	if e.Space == "" {
		return e.Tag
	}
	if p, ok := knownNamespaces[e.NamespaceURI()]; ok {
		return p + ":" + e.Tag
	}
	return e.Space + ":" + e.Tag
}

func isNamespaceDecl(a etree.Attr) bool {
	return a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns")
}

// element checks e against rule r and recurses into its children.
func (v *validator) element(e *etree.Element, r *elemRule) {
	name := elemName(e)
	if r.anyBody {
		return
	}
	// Attributes.
	for _, a := range e.Attr {
		if isNamespaceDecl(a) {
			continue
		}
		an := a.Key
		if a.Space != "" {
			an = a.Space + ":" + a.Key
		}
		ar, ok := r.attrs[an]
		if !ok {
			msg := fmt.Sprintf("attribute %s is not allowed in <%s>", an, name)
			if len(r.attrList) == 0 {
				msg += " (it takes no attributes)"
			} else if s := suggest(an, r.attrList); s != "" {
				msg += "; did you mean " + s + "?"
			} else {
				msg += " (allowed: " + strings.Join(r.attrList, ", ") + ")"
			}
			v.attrErrorf(e, an, "%s", msg)
			continue
		}
		if ar.typ != nil {
			if problem := ar.typ.check(a.Value); problem != "" {
				v.attrErrorf(e, an, "attribute %s of <%s> %s", an, name, ar.typ.describe(a.Value, problem))
			}
		}
	}
	for _, an := range r.attrList {
		if ar := r.attrs[an]; ar.required && e.SelectAttr(an) == nil {
			v.errorf(e, "element <%s> is missing required attribute %s", name, an)
		}
	}
	// Text.
	text := directText(e)
	if r.text == nil {
		if strings.TrimSpace(text) != "" {
			v.errorf(e, "element <%s> must not contain text: got %q", name, strings.TrimSpace(text))
		}
	} else if problem := r.text.check(text); problem != "" {
		v.errorf(e, "content of <%s> %s", name, r.text.describe(text, problem))
	}
	// Children.
	if v.depth == len(v.counts) {
		v.counts = append(v.counts, map[string]int{})
	}
	counts := v.counts[v.depth]
	clear(counts)
	v.depth++
	defer func() { v.depth-- }()
	for _, tok := range e.Child {
		c, isElem := tok.(*etree.Element)
		if !isElem {
			continue
		}
		cn := elemName(c)
		cr, ok := r.children[cn]
		if !ok {
			msg := fmt.Sprintf("element <%s> is not allowed in <%s>", cn, name)
			if len(r.childList) == 0 {
				msg += " (it takes no child elements)"
			} else if s := suggest(cn, r.childList); s != "" {
				msg += "; did you mean <" + s + ">?"
			} else if len(r.childList) <= 12 {
				msg += " (allowed: " + strings.Join(r.childList, ", ") + ")"
			}
			v.errorf(c, "%s", msg)
			continue
		}
		counts[cn]++
		if cr.max >= 0 && counts[cn] > cr.max {
			if cr.max == 1 {
				v.errorf(c, "element <%s> may appear only once in <%s>", cn, name)
			} else {
				v.errorf(c, "element <%s> may appear at most %d times in <%s>", cn, cr.max, name)
			}
		}
		v.element(c, cr.rule)
	}
	// The recursive calls reused deeper maps only; counts is still ours.
	for _, cn := range r.childList {
		if cr := r.children[cn]; cr.min > 0 && counts[cn] < cr.min {
			v.errorf(e, "element <%s> is missing required element <%s>", name, cn)
		}
	}
}

// directText concatenates e's own character data (not its children's).
func directText(e *etree.Element) string {
	var only *etree.CharData
	n := 0
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok {
			only = cd
			n++
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		return only.Data
	}
	var b strings.Builder
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok {
			b.WriteString(cd.Data)
		}
	}
	return b.String()
}

// suggest returns the candidate closest to word when it is a near miss (a
// typo, a swapped pair of letters, different case), or "".
func suggest(word string, candidates []string) string {
	best, bestDist := "", 1<<30
	lw := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(lw, strings.ToLower(c))
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 2
	if len(word) <= 4 {
		limit = 1
	}
	if best == "" || bestDist > limit || best == word {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// transpositions of adjacent characters).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 1 << 20
	}
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// Warnings returns what the last Validate found that libvirt accepts but
// changes or that is probably a mistake (currentMemory above memory, which
// libvirt lowers; allocation above capacity; a non-contiguous netmask).
func (d *Document) Warnings() ErrorList { return d.warnings }

// Validate checks the document against libvirt's vocabulary for its kind
// (structure and value types) and then the semantic rules libvirt's parser
// applies. It returns every error found, sorted by position, or nil.
func (d *Document) Validate() ErrorList { return d.check(true) }

// Semantics runs only the semantic rules libvirt's parser applies (units,
// UUID, names, vCPU counts, addresses, ...), not the structural schema
// pass: what `define --no-validate` still has to enforce.
func (d *Document) Semantics() ErrorList { return d.check(false) }

func (d *Document) check(structure bool) ErrorList {
	v := &validator{d: d}
	root := d.Doc.Root()
	if root == nil {
		return ErrorList{{Pos: Pos{File: d.File}, Msg: "document has no root element"}}
	}
	if r := rootRule(d.Kind); r != nil && structure {
		v.element(root, r)
	}
	switch d.Kind {
	case KindDomain:
		v.domainSemantics(root)
	case KindNetwork:
		v.networkSemantics(root)
	case KindPool:
		v.poolSemantics(root)
	case KindVolume:
		v.volumeSemantics(root)
	}
	v.warns.sort()
	d.warnings = v.warns
	if len(v.errs) == 0 {
		return nil
	}
	v.errs = dedupe(v.errs)
	v.errs.sort()
	return v.errs
}

func dedupe(l ErrorList) ErrorList {
	seen := map[Error]bool{}
	out := l[:0]
	for _, e := range l {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return slices.Clip(out)
}
