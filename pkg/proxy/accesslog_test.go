package proxy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// An update that turns access logs on applies to the connections already
// open; a bad access_log is refused naming the field, by Apply (the xDS
// NACK) and Validate, and leaves the config in force.
func TestAccessLogConfigUpdates(t *testing.T) {
	a, _ := named(t, "a")
	clusters := []obj{cluster("a", "", a.Addr())}
	routes := []obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))}
	p := start(t, []obj{listener("in", "r", nil)}, routes, clusters)
	c := dial(t, p.Addr(t, "in"))
	answeredBy(t, c, nil)
	apply := func(al obj) error {
		boot, err := config.Parse([]byte(configJSON(t, []obj{listener("in", "r", obj{"access_log": al})}, routes, clusters)))
		if err != nil {
			t.Fatal(err)
		}
		if verr := proxy.Validate(boot.Resources); verr != nil {
			if err := p.Apply(boot.Resources); err == nil || err.Error() != verr.Error() {
				t.Fatalf("Validate: %v; Apply: %v", verr, err)
			}
			return verr
		}
		return p.Apply(boot.Resources)
	}
	path := filepath.Join(t.TempDir(), "access.log")
	if err := apply(obj{"format": "JSON", "path": path, "fields": []string{"route", "cluster", "status"}}); err != nil {
		t.Fatal(err)
	}
	answeredBy(t, c, nil)
	testutil.Eventually(t, 5*time.Second, "a line", func() bool {
		b, _ := os.ReadFile(path)
		return string(b) == `{"route":"all","cluster":"a","status":"ok"}`+"\n"
	})
	for _, tc := range []struct {
		al   obj
		want string
	}{
		{obj{"fields": []string{"route", "verb"}}, `listeners[0] (in): filter rosetta.metaprotocol: access_log.fields[1]: "verb" is not a field`},
		{obj{"sample_percent": 150}, "access_log.sample_percent: 150 is not between 0 and 100"},
		{obj{"format": 3}, "access_log.format: 3 is not TEXT or JSON"},
	} {
		if err := apply(tc.al); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want %q", tc.al, err, tc.want)
		}
	}
	// A file that cannot be opened is only found by Apply.
	boot, err := config.Parse([]byte(configJSON(t, []obj{listener("in", "r", obj{"access_log": obj{"path": "/nonexistent/dir/access.log"}})}, routes, clusters)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(boot.Resources); err == nil || !strings.Contains(err.Error(), `listener "in": filter rosetta.metaprotocol: access_log.path: open /nonexistent/dir/access.log`) {
		t.Errorf("unopenable path: %v", err)
	}
	answeredBy(t, c, nil)
	testutil.Eventually(t, 5*time.Second, "the second line, under the config still in force", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n") == 2
	})
	if err := apply(nil); err != nil {
		t.Fatal(err)
	}
	answeredBy(t, c, nil)
	time.Sleep(100 * time.Millisecond)
	if b, _ := os.ReadFile(path); strings.Count(string(b), "\n") != 2 {
		t.Errorf("logs turned off still wrote:\n%s", b)
	}
}
