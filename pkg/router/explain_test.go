package router

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TestExplain: Explain takes the route Match takes, and for each route
// before it names the condition that failed, as written, with what the
// request had.
func TestExplain(t *testing.T) {
	table, err := compileJSON(t, `{"name":"r","routes":[
	  {"name":"exact","match":{"attributes":[{"name":"method","exact":"sayHello"}]},"route":{"cluster":"a"}},
	  {"name":"and","match":{"attributes":[{"name":"interface","prefix":"org.example."},{"name":"version","regex":"2\\..*"}]},"route":{"cluster":"b"}},
	  {"name":"absent","match":{"attributes":[{"name":"env","present":false}]},"route":{"cluster":"c"}},
	  {"name":"not-prod","match":{"attributes":[{"name":"env","exact":"prod","invert":true}]},"route":{"cluster":"d"}}
	]}`)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		attrs codec.Map
		want  string
		// why: each failed route's condition and value, "cond=got".
		why []string
	}{
		{codec.Map{"method": "sayHello", "env": "x"}, "exact", nil},
		{codec.Map{"interface": "org.example.Greeter", "version": "2.1", "env": "x"}, "and", []string{`method exact "sayHello"=<none>`}},
		{codec.Map{"interface": "org.example.Greeter", "version": "12.1", "env": "prod"}, "",
			[]string{`method exact "sayHello"=<none>`, `version regex "2\\..*"=12.1`, `env absent=prod`, `env not exact "prod"=prod`}},
		{codec.Map{"interface": "org.other.Greeter", "version": "2.1"}, "absent",
			[]string{`method exact "sayHello"=<none>`, `interface prefix "org.example."=org.other.Greeter`}},
		{codec.Map{"env": "staging"}, "not-prod", []string{`method exact "sayHello"=<none>`, `interface prefix "org.example."=<none>`, `env absent=staging`}},
	}
	for _, tc := range cases {
		msg := &codec.Message{Attrs: tc.attrs}
		r, verdicts := table.Explain(msg)
		got, matched := "", table.Match(msg)
		if r != matched {
			t.Errorf("%v: Explain took %v, Match %v", tc.attrs, r, matched)
		}
		if r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("%v: took %q, want %q", tc.attrs, got, tc.want)
		}
		var why []string
		for _, v := range verdicts {
			if v.Matched {
				if v.Route != tc.want {
					t.Errorf("%v: verdict says %q matched", tc.attrs, v.Route)
				}
				continue
			}
			value := v.Got
			if v.Absent {
				value = "<none>"
			}
			why = append(why, v.Condition+"="+value)
		}
		if strings.Join(why, "; ") != strings.Join(tc.why, "; ") {
			t.Errorf("%v: why\n got %q\nwant %q", tc.attrs, why, tc.why)
		}
	}
}
