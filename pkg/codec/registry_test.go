package codec_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func newNop(codec.Options, codec.Peer) (codec.Codec, error) { return nil, nil }

var runs int

func TestRegisterRefusesBadRegistrations(t *testing.T) {
	runs++ // -count=N runs this N times in one process
	name := fmt.Sprintf("registry-test-%d", runs)
	codec.Register(codec.Protocol{Name: name, New: newNop})
	cases := []struct {
		name string
		p    codec.Protocol
		want string
	}{
		{"empty name", codec.Protocol{New: newNop}, "empty name"},
		{"nil New", codec.Protocol{Name: "x-nil"}, "nil New"},
		{"the name auto", codec.Protocol{Name: codec.Auto, New: newNop}, "reserved"},
		{"duplicate", codec.Protocol{Name: name, New: newNop}, "registered twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), tc.want) {
					t.Fatalf("Register(%+v) panicked with %v, want %q", tc.p, r, tc.want)
				}
			}()
			codec.Register(tc.p)
		})
	}
	if _, ok := codec.Lookup(name); !ok {
		t.Fatal("Lookup does not find a registered protocol")
	}
	if _, ok := codec.Lookup("x-nil"); ok {
		t.Fatal("a refused registration is visible")
	}
}

func TestMessageGetSeesMutationsFirst(t *testing.T) {
	m := &codec.Message{Attrs: codec.Map{"env": "prod", "method": "a"}}
	m.Set("env", "canary")
	if v, _ := m.Get("env"); v != "canary" {
		t.Fatalf("Get after Set = %q", v)
	}
	if v, _ := m.Get("method"); v != "a" {
		t.Fatalf("Get of an unmutated key = %q", v)
	}
	if _, ok := m.Get("nope"); ok {
		t.Fatal("Get of a missing key succeeded")
	}
}
