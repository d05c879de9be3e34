package client

import (
	"os"
	"path/filepath"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// FuzzDecode decodes fuzzed DiscoveryResponses, seeded with the shipped
// examples' resources packed as the controller sends them. A response
// decode accepts yields one message of the response's type per resource,
// each the resource's own bytes read back (it marshals to a message equal
// to the one the Any holds).
func FuzzDecode(f *testing.F) {
	for _, resp := range seedResponses(f) {
		wire, err := proto.Marshal(resp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var resp discoveryv3.DiscoveryResponse
		if proto.Unmarshal(wire, &resp) != nil {
			return
		}
		p, err := decode(&resp)
		if err != nil {
			return // a refused response is NACKed; the proxy keeps its config
		}
		if len(p.resources) != len(resp.GetResources()) || p.version != resp.GetVersionInfo() || p.nonce != resp.GetNonce() {
			t.Fatalf("%d resources of %d, version %q nonce %q", len(p.resources), len(resp.GetResources()), p.version, p.nonce)
		}
		for i, m := range p.resources {
			if got := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()); got != resp.GetTypeUrl() {
				t.Fatalf("resource %d decoded as %s in a %s response", i, got, resp.GetTypeUrl())
			}
			back, err := newMessage(resp.GetTypeUrl())
			if err != nil {
				t.Fatal(err)
			}
			if err := resp.GetResources()[i].UnmarshalTo(back); err != nil || !proto.Equal(back, m) {
				t.Fatalf("resource %d is not what the Any holds: %v", i, err)
			}
		}
		// What decode accepts goes through the reference check without
		// panicking, as in a real stream.
		all := map[string][]proto.Message{resp.GetTypeUrl(): p.resources}
		r := toResources(all)
		_ = checkRefs(&r)
	})
}

// FuzzDecodeDelta decodes fuzzed DeltaDiscoveryResponses, seeded with
// the examples' resources as delta responses. A response decodeDelta
// accepts yields, by name, one message of the response's type per
// resource that has a body, named as the resource is; the reference graph
// takes them without panicking.
func FuzzDecodeDelta(f *testing.F) {
	for _, resp := range seedResponses(f) {
		d := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: resp.GetTypeUrl(), Nonce: "1", RemovedResources: []string{"gone"}}
		for _, a := range resp.GetResources() {
			m, err := decodeAny(resp.GetTypeUrl(), 0, a)
			if err != nil {
				f.Fatal(err)
			}
			d.Resources = append(d.Resources, &discoveryv3.Resource{Name: nameOf(m), Version: "v1", Resource: a})
		}
		wire, err := proto.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var resp discoveryv3.DeltaDiscoveryResponse
		if proto.Unmarshal(wire, &resp) != nil {
			return
		}
		u, err := decodeDelta(&resp)
		if err != nil {
			return // NACKed alone; nothing held changes
		}
		bodies := 0
		for _, r := range resp.GetResources() {
			if r.GetResource() != nil {
				bodies++
			}
		}
		if len(u.resources) != bodies || u.nonce != resp.GetNonce() {
			t.Fatalf("%d resources of %d with a body, nonce %q", len(u.resources), bodies, u.nonce)
		}
		held := map[ref]bool{}
		g := newRefGraph(func(r ref) bool { return held[r] })
		for name, r := range u.resources {
			if nameOf(r.msg) != name {
				t.Fatalf("resource %q decoded as one named %q", name, nameOf(r.msg))
			}
			held[ref{u.typeURL, name}] = true
			g.set(ref{u.typeURL, name}, r.msg, func(ref) {})
		}
		_ = g.firstMissing()
	})
}

// seedResponses packs each example's resources, one response per type.
func seedResponses(f *testing.F) []*discoveryv3.DiscoveryResponse {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in pkg/config/testdata: %v", err)
	}
	var out []*discoveryv3.DiscoveryResponse
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		b, err := config.Parse(data)
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		for typ, ms := range byType(b.Resources) {
			resp := &discoveryv3.DiscoveryResponse{TypeUrl: typ, VersionInfo: "1", Nonce: "1"}
			for _, m := range ms {
				a, err := anypb.New(m)
				if err != nil {
					f.Fatal(err)
				}
				resp.Resources = append(resp.Resources, a)
			}
			out = append(out, resp)
		}
	}
	return out
}
