package controller

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestRegisterRefuses: Register panics, naming the protocol, on what would
// make the registry ambiguous; nothing of a refused registration stays.
// (The built-in translators are registered for this test binary by
// golden_external_test.go.)
func TestRegisterRefuses(t *testing.T) {
	newT := func() Translator { return nil }
	kind := func(name string) Kind {
		return Kind{Kind: name, GVR: schema.GroupVersionResource{Group: "x.example.dev", Version: "v1", Resource: "xs"},
			New: func() metav1.Object { return &metav1.ObjectMeta{} }}
	}
	cases := []struct {
		name string
		info TranslatorInfo
		want string
	}{
		{"empty protocol", TranslatorInfo{New: newT}, "empty protocol"},
		{"nil New", TranslatorInfo{Protocol: "x-nil"}, `"x-nil" with a nil New`},
		{"protocol twice", TranslatorInfo{Protocol: "redis", New: newT}, `protocol "redis"`},
		{"codec twice", TranslatorInfo{Protocol: "x-codec", Codec: "dubbo", New: newT}, `codec "dubbo"`},
		{"kind twice", TranslatorInfo{Protocol: "x-kind", New: newT, Kinds: []Kind{kind("RedisService")}}, "kind RedisService"},
		{"kind without GVR", TranslatorInfo{Protocol: "x-gvr", New: newT, Kinds: []Kind{{Kind: "XThing", New: kind("").New}}}, "lacks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.Contains(msg, c.want) {
					t.Fatalf("panic %v, want one naming %s", r, c.want)
				}
				for _, have := range Translators() {
					if strings.HasPrefix(have.Protocol, "x-") {
						t.Fatalf("a refused registration stayed: %s", have.Protocol)
					}
				}
			}()
			Register(c.info)
		})
	}
}

// TestRegisteredKindsAreRead: the folder source decodes a translator's
// kind from its groups, and names them when a document uses another.
func TestRegisteredKindsAreRead(t *testing.T) {
	doc := "apiVersion: %s/v1alpha1\nkind: RedisService\nmetadata: {name: c, namespace: demo}\nspec: {host: [c], redis: [{route: {host: c}}]}\n"
	for _, group := range []string{"redis.rosetta.dev", "redis.aeraki.io"} {
		in := &Inputs{}
		if err := in.AddYAML([]byte(strings.ReplaceAll(doc, "%s", group))); err != nil || len(in.Objects["RedisService"]) != 1 {
			t.Fatalf("group %s: %v, objects %v", group, err, in.Objects)
		}
	}
	err := (&Inputs{}).AddYAML([]byte(strings.ReplaceAll(doc, "%s", "metaprotocol.rosetta.dev")))
	if err == nil || !strings.Contains(err.Error(), `RedisService is read from group "redis.aeraki.io" or "redis.rosetta.dev"`) {
		t.Fatalf("a registered kind in another group: %v", err)
	}
}
