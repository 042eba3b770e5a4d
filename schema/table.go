package schema

import (
	"fmt"
	"strings"
	"sync"
)

// Rule tables are written in a small indented notation, one table per kind
// (see domain_rules.go and friends). Each line is an element:
//
//	name[card] @attr=type @req!=type :texttype &fragment any
//
// card is nothing (optional, at most once), ! (exactly once), * (any number)
// or + (at least one). Children are indented two spaces under their parent
// and may appear in any order (libvirt's content models are interleaves).
// A line holding only "&fragment" merges the fragment into its parent.
// A top-level line starting with '=' defines a fragment: attributes and
// children that "&name" merges into an element; fragments may refer to
// elements that include the same fragment, which is how recursive content
// (backing chains) is written. "any" accepts arbitrary content (metadata).
// Types are those of namedTypes, enum(a|b), range(lo..hi) or re(regexp).
type ruleTable struct {
	roots map[string]*elemRule
	frags map[string]*elemRule
}

func compileTable(name, text string) (*ruleTable, error) {
	t := &ruleTable{roots: map[string]*elemRule{}, frags: map[string]*elemRule{}}
	type level struct {
		indent int
		rule   *elemRule
	}
	var stack []level
	var all []*elemRule
	for n, line := range strings.Split(text, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		fields := strings.Fields(line)
		head := fields[0]
		where := fmt.Sprintf("%s rules line %d", name, n+1)
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		if inc, ok := strings.CutPrefix(head, "&"); ok && indent > 0 && len(stack) > 0 {
			// "&fragment" on its own line merges into the parent.
			parent := stack[len(stack)-1].rule
			parent.includes = append(parent.includes, inc)
			continue
		}
		var r *elemRule
		if indent == 0 {
			stack = stack[:0]
			if frag, ok := strings.CutPrefix(head, "="); ok {
				r = newElemRule(frag)
				t.frags[frag] = r
			} else {
				r = newElemRule(head)
				t.roots[head] = r
			}
		} else {
			if len(stack) == 0 {
				return nil, fmt.Errorf("%s: indented line without a parent", where)
			}
			minN, maxN := 0, 1
			switch head[len(head)-1] {
			case '!':
				minN, maxN = 1, 1
			case '?':
			case '*':
				minN, maxN = 0, -1
			case '+':
				minN, maxN = 1, -1
			default:
				head += "?"
			}
			head = head[:len(head)-1]
			r = newElemRule(head)
			stack[len(stack)-1].rule.addChild(&childRule{rule: r, min: minN, max: maxN})
		}
		all = append(all, r)
		for _, tok := range fields[1:] {
			switch {
			case tok == "any":
				r.anyBody = true
			case strings.HasPrefix(tok, "&"):
				r.includes = append(r.includes, tok[1:])
			case strings.HasPrefix(tok, ":"):
				vt, err := lookupType(tok[1:])
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				r.text = vt
			case strings.HasPrefix(tok, "@"):
				an, typ, _ := strings.Cut(tok[1:], "=")
				req := strings.HasSuffix(an, "!")
				an = strings.TrimSuffix(an, "!")
				if typ == "" {
					typ = "str"
				}
				vt, err := lookupType(typ)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				r.addAttr(&attrRule{name: an, typ: vt, required: req})
			default:
				return nil, fmt.Errorf("%s: unknown token %q", where, tok)
			}
		}
		stack = append(stack, level{indent, r})
	}
	for _, r := range all {
		if err := t.link(r, nil); err != nil {
			return nil, fmt.Errorf("%s rules: %w", name, err)
		}
	}
	return t, nil
}

// link merges r's fragments into it (the fragments first, so an element's
// own declarations win).
func (t *ruleTable) link(r *elemRule, seen []string) error {
	if r.linked {
		return nil
	}
	for _, inc := range r.includes {
		for _, s := range seen {
			if s == inc {
				return fmt.Errorf("fragment %s includes itself", inc)
			}
		}
		f, ok := t.frags[inc]
		if !ok {
			return fmt.Errorf("element %s includes unknown fragment %s", r.name, inc)
		}
		if err := t.link(f, append(seen, inc)); err != nil {
			return err
		}
		for _, an := range f.attrList {
			if _, own := r.attrs[an]; !own {
				r.addAttr(f.attrs[an])
			}
		}
		for _, cn := range f.childList {
			if _, own := r.children[cn]; !own {
				r.addChild(f.children[cn])
			}
		}
		if r.text == nil {
			r.text = f.text
		}
		r.anyBody = r.anyBody || f.anyBody
	}
	r.linked = true
	return nil
}

var (
	tablesOnce sync.Once
	tables     [4]*elemRule
	tablesErr  error
)

func loadTables() {
	for k, src := range []struct{ name, text string }{
		{"domain", domainRules}, {"network", networkRules}, {"pool", poolRules}, {"volume", volumeRules},
	} {
		t, err := compileTable(src.name, src.text)
		if err != nil {
			tablesErr = err
			return
		}
		root := t.roots[src.name]
		if root == nil {
			tablesErr = fmt.Errorf("%s rules: no root element <%s>", src.name, src.name)
			return
		}
		tables[k] = root
	}
}

// rootRule returns the compiled rule for a kind's root element. The tables
// are ours and tested; a table that does not compile is a programming error.
func rootRule(k Kind) *elemRule {
	tablesOnce.Do(loadTables)
	if tablesErr != nil {
		panic("schema: " + tablesErr.Error())
	}
	if k < 0 || int(k) >= len(tables) {
		return nil
	}
	return tables[k]
}
