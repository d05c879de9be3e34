package trpc

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func caller(t *testing.T) (codec.Codec, codec.Caller) {
	t.Helper()
	c := newCodec(t, nil)
	return c, c.(codec.Caller)
}

// The request's header is read back with trpc-protocol's generated type,
// and the reply built for it pairs with it.
func TestCallerRequestAndReply(t *testing.T) {
	c, cl := caller(t)
	req, err := cl.NewRequest(5, map[string]string{
		"func": "/a.B/C", "callee": "a.B", "caller": "x.Y", "timeout": "800", "env": "dev", "trans_info.zone": "z1",
	}, []string{`{"name":"w"}`})
	if err != nil {
		t.Fatal(err)
	}
	if req.Kind != codec.KindRequest || req.ID != 5 {
		t.Fatalf("kind %s id %d", req.Kind, req.ID)
	}
	f := req.Private.(*frame)
	var h trpcpb.RequestProtocol
	if err := proto.Unmarshal(f.pb, &h); err != nil {
		t.Fatal(err)
	}
	if h.RequestId != 5 || string(h.Func) != "/a.B/C" || string(h.Callee) != "a.B" || string(h.Caller) != "x.Y" ||
		h.Timeout != 800 || h.ContentType != contentJSON || string(h.TransInfo["env"]) != "dev" || string(h.TransInfo["zone"]) != "z1" {
		t.Fatalf("header %v", &h)
	}
	if string(f.rest) != `{"name":"w"}` {
		t.Fatalf("body %q", f.rest)
	}
	if v, _ := req.Get("zone"); v != "z1" {
		t.Fatalf("the codec reads zone=%q", v)
	}
	if a, err := cl.Args(req); err != nil || a != `content_type=2 body={"name":"w"}` {
		t.Fatalf("Args %q %v", a, err)
	}
	resp, err := cl.Respond(req, `"hi"`)
	if err != nil {
		t.Fatal(err)
	}
	back, err := c.Decode(resp.Raw)
	if err != nil || back.ID != 5 || back.Kind != codec.KindResponse {
		t.Fatalf("reply %+v %v", back, err)
	}
	if a, err := cl.Answer(back); err != nil || a.Value != `"hi"` || a.Status != codec.StatusOK {
		t.Fatalf("Answer %+v %v", a, err)
	}
	raw, _ := cl.Respond(req, "hex:0a02")
	if a, _ := cl.Answer(raw); a.Value != "hex:0a02" {
		t.Fatalf("raw reply shown as %q", a.Value)
	}
	local, err := c.Reply(req, codec.StatusNoRoute, "no route")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := cl.Answer(local); err != nil || a.Status == codec.StatusOK || !strings.Contains(a.Error, "no route") {
		t.Fatalf("a proxy's reply %+v %v", a, err)
	}
}

func TestCallerRefuses(t *testing.T) {
	_, cl := caller(t)
	for _, tc := range []struct {
		attrs map[string]string
		args  []string
		want  string
	}{
		{map[string]string{"callee": "a"}, nil, "attribute func"},
		{map[string]string{"func": "/a/b", "timeout": "soon"}, nil, `timeout="soon"`},
		{map[string]string{"func": "/a/b", "content_type": "xml"}, nil, `content_type="xml"`},
		{map[string]string{"func": "/a/b"}, []string{"a", "b"}, "one argument"},
		{map[string]string{"func": "/a/b"}, []string{"hex:zz"}, "hex:zz"},
	} {
		if _, err := cl.NewRequest(1, tc.attrs, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.attrs, tc.args, err, tc.want)
		}
	}
}
