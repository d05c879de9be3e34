package router

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func compileJSON(t *testing.T, js string) (*Table, error) {
	t.Helper()
	rc := &configv1alpha1.RouteConfiguration{}
	if err := protojson.Unmarshal([]byte(js), rc); err != nil {
		t.Fatal(err)
	}
	return Compile(rc)
}

func TestMatchTable(t *testing.T) {
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
	}{
		{codec.Map{"method": "sayHello", "env": "x"}, "exact"},
		{codec.Map{"interface": "org.example.Greeter", "version": "2.1", "env": "x"}, "and"},
		{codec.Map{"interface": "org.example.Greeter", "version": "12.1", "env": "prod"}, ""}, // regex is anchored
		{codec.Map{"interface": "org.other.Greeter", "version": "2.1"}, "absent"},
		{codec.Map{"env": "staging"}, "not-prod"},
		{codec.Map{"env": "prod"}, ""},
	}
	for _, tc := range cases {
		got := ""
		if r := table.Match(&codec.Message{Attrs: tc.attrs}); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("%v matched %q, want %q", tc.attrs, got, tc.want)
		}
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	cases := []struct{ js, want string }{
		{`{"name":"r","routes":[{"name":"x","match":{"attributes":[{"name":"m","regex":"("}]},"route":{"cluster":"a"}}]}`, "routes[0] (x): match.attributes[0]: regex"},
		{`{"name":"r","routes":[{"name":"x","match":{"attributes":[{"name":"m"}]},"route":{"cluster":"a"}}]}`, "match.attributes[0]: one of exact, prefix, regex or present"},
		{`{"name":"r","routes":[{"name":"x"}]}`, "route: a cluster or weighted_clusters is required"},
		{`{"name":"r","routes":[{"name":"x","route":{"weighted_clusters":{"clusters":[{"name":"a"}]}}}]}`, "weighted_clusters: the weights sum to 0"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","retry_policy":{"num_retries":1,"retry_on":["sometimes"]}}}]}`, "retry_policy.retry_on[0]"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","fault":{"abort":{"status":"timeout","percentage":150}}}}]}`, "fault.abort.percentage"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","mirror":[{"percentage":5}]}}]}`, "mirror[0].cluster"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","local_rate_limit":{"max_tokens":1}}}]}`, "local_rate_limit.fill_interval"},
		{`{"name":"r","local_rate_limit":{}}`, `route config "r": local_rate_limit: a token_bucket or conditions are required`},
		{`{"name":"r","local_rate_limit":{"token_bucket":{"max_tokens":0,"fill_interval":"1s"}}}`, "local_rate_limit.token_bucket: local_rate_limit.max_tokens"},
		{`{"name":"r","local_rate_limit":{"conditions":[{"match":{"attributes":[{"name":"m"}]},"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}}`, "local_rate_limit.conditions[0].match.attributes[0]"},
		{`{"name":"r","local_rate_limit":{"conditions":[{"match":{}}]}}`, "local_rate_limit.conditions[0].token_bucket: required"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","global_rate_limit":{"cluster":"rls","descriptors":[{"key":"k","attribute":"a"}]}}}]}`, "global_rate_limit.domain"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","global_rate_limit":{"domain":"d","descriptors":[{"key":"k","attribute":"a"}]}}}]}`, "global_rate_limit.cluster"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","global_rate_limit":{"domain":"d","cluster":"rls"}}}]}`, "global_rate_limit.descriptors"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","global_rate_limit":{"domain":"d","cluster":"rls","descriptors":[{"key":"k"}]}}}]}`, "global_rate_limit.descriptors[0]"},
		{`{"name":"r","routes":[{"name":"x","route":{"cluster":"a","global_rate_limit":{"domain":"d","cluster":"rls","timeout":"-1s","descriptors":[{"key":"k","attribute":"a"}]}}}]}`, "global_rate_limit.timeout"},
	}
	for _, tc := range cases {
		_, err := compileJSON(t, tc.js)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.js, err, tc.want)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	table, err := compileJSON(t, `{"name":"r","routes":[{"name":"x","route":{"cluster":"a","local_rate_limit":{"max_tokens":2,"tokens_per_fill":1,"fill_interval":"1s"}}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	b := table.Routes[0].Action.RateLimit
	now := time.Now()
	got := []bool{b.Allow(now), b.Allow(now), b.Allow(now)}
	if !got[0] || !got[1] || got[2] {
		t.Fatalf("a bucket of 2: %v", got)
	}
	if !b.Allow(now.Add(time.Second)) {
		t.Fatal("no token after a fill interval")
	}
}

// TestServiceLimitIsSharedByRoutes: the route configuration's buckets are
// one for all its routes; a condition's bucket is its own.
func TestServiceLimitIsSharedByRoutes(t *testing.T) {
	table, err := compileJSON(t, `{"name":"r",
		"local_rate_limit":{"token_bucket":{"max_tokens":2,"fill_interval":"3600s"},
			"conditions":[{"match":{"attributes":[{"name":"m","exact":"vip"}]},"token_bucket":{"max_tokens":1,"fill_interval":"3600s"}}]},
		"routes":[{"name":"a","match":{"attributes":[{"name":"to","exact":"a"}]},"route":{"cluster":"a"}},{"name":"b","route":{"cluster":"b"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	allow := func(attrs codec.Map) bool {
		m := &codec.Message{Attrs: attrs}
		return table.Match(m).Action.AllowLocal(m, now)
	}
	got := []bool{allow(codec.Map{"to": "a"}), allow(codec.Map{"to": "b"}), allow(codec.Map{"to": "a"}),
		allow(codec.Map{"m": "vip"}), allow(codec.Map{"m": "vip"})}
	want := []bool{true, true, false, true, false}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d admitted %t, want %t (all: %v)", i+1, got[i], want[i], got)
		}
	}
}
