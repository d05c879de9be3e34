package router

import (
	"fmt"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Verdict is one route's answer to a request: it matched, or the first of
// its conditions that did not hold.
type Verdict struct {
	Route   string `json:"route"`
	Index   int    `json:"index"`
	Matched bool   `json:"matched"`
	// Condition is the condition that failed, as written
	// (`method exact "sayHello"`); empty when the route matched.
	Condition string `json:"condition,omitempty"`
	// Got is what the request had for that attribute; Absent is true when
	// it had none.
	Got    string `json:"got,omitempty"`
	Absent bool   `json:"absent,omitempty"`
}

// Explain follows m through the table as Match does and returns the
// route it takes (nil when none) with a verdict for every route tried,
// the taken one last. It uses the very conditions Match uses, so its
// answer cannot differ from the proxy's routing.
func (t *Table) Explain(m *codec.Message) (*Route, []Verdict) {
	var out []Verdict
	for i, r := range t.Routes {
		v := Verdict{Route: r.Name, Index: i, Matched: true}
		for j := range r.conds {
			c := &r.conds[j]
			if c.holds(m) {
				continue
			}
			v.Matched, v.Condition = false, c.String()
			got, ok := m.Get(c.name)
			v.Got, v.Absent = got, !ok
			break
		}
		out = append(out, v)
		if v.Matched {
			return r, out
		}
	}
	return nil, out
}

// String writes the condition as a MetaRouter's match says it:
// `method exact "sayHello"`, `version not prefix "1."`, `group present`.
func (c *condition) String() string {
	not := ""
	if c.invert {
		not = "not "
	}
	switch c.kind {
	case condExact:
		return fmt.Sprintf("%s %sexact %q", c.name, not, c.exact)
	case condPrefix:
		return fmt.Sprintf("%s %sprefix %q", c.name, not, c.prefix)
	case condRegex:
		// The compiled expression is anchored; show what was written.
		src := c.re.String()
		src = src[len("^(?:") : len(src)-len(")$")]
		return fmt.Sprintf("%s %sregex %q", c.name, not, src)
	default:
		if c.present != c.invert {
			return c.name + " present"
		}
		return c.name + " absent"
	}
}
