package thrift

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Every format a call can take: the request and its reply decode with the
// codec's own reader (transport, protocol, name, seqid, headers), and the
// fields come back as given.
func TestCallerFormats(t *testing.T) {
	for _, f := range []struct{ transport, protocol string }{
		{"", ""}, {"buffered", "binary"}, {"framed", "compact"}, {"buffered", "compact"}, {"header", "binary"}, {"header", "compact"},
	} {
		attrs := map[string]string{"method": "echo", "service": "Echo", "transport": f.transport, "protocol": f.protocol}
		if f.transport == "header" {
			attrs["x-env"] = "dev"
		}
		args := `{"1":{"1":"txt","2:i32":5,"3:list<string>":["a"],"4:map<string,i64>":{"k":9},"8:binary":"AAE=","10:map<i32,list<bool>>":{"3":[true]}},"2:double":1.5}`
		c := newCodec(t, nil)
		req, err := c.NewRequest(42, attrs, []string{args})
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if req.Kind != codec.KindRequest || req.ID != 42 {
			t.Fatalf("%v: kind %s id %d", f, req.Kind, req.ID)
		}
		if m, _ := req.Get("method"); m != "echo" {
			t.Fatalf("%v: method %q", f, m)
		}
		if s, _ := req.Get("service"); s != "Echo" {
			t.Fatalf("%v: service %q", f, s)
		}
		if f.transport == "header" {
			if v, _ := req.Get("x-env"); v != "dev" {
				t.Fatalf("%v: header x-env=%q", f, v)
			}
		}
		// A server's codec reads the frame from the wire.
		srv := newCodec(t, nil)
		sp, err := srv.Split(req.Raw)
		if err != nil || sp.Len != len(req.Raw) {
			t.Fatalf("%v: split %+v %v", f, sp, err)
		}
		got, err := srv.Decode(req.Raw)
		if err != nil {
			t.Fatal(err)
		}
		a, err := srv.Args(got)
		if err != nil || a != `{"1":{"1":"txt","10":{"3":[true]},"2":5,"3":["a"],"4":{"k":9},"8":"base64:AAE="},"2":1.5}` {
			t.Fatalf("%v: Args %s %v", f, a, err)
		}
		resp, err := srv.Respond(got, `{"0":"ok"}`)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.Decode(resp.Raw)
		if err != nil || back.ID != 42 || back.Kind != codec.KindResponse {
			t.Fatalf("%v: reply %+v %v", f, back, err)
		}
		if ans, err := c.Answer(back); err != nil || ans.Value != `{"0":"ok"}` || ans.Status != codec.StatusOK {
			t.Fatalf("%v: Answer %+v %v", f, ans, err)
		}
		local, err := srv.Reply(got, codec.StatusNoRoute, "no route")
		if err != nil {
			t.Fatal(err)
		}
		if ans, err := c.Answer(local); err != nil || ans.Status == codec.StatusOK || !strings.HasPrefix(ans.Code, "TApplicationException") || !strings.Contains(ans.Error, "no route") {
			t.Fatalf("%v: a proxy's reply %+v %v", f, ans, err)
		}
	}
}

func TestCallerRefuses(t *testing.T) {
	c := newCodec(t, nil)
	for _, tc := range []struct {
		attrs map[string]string
		args  []string
		want  string
	}{
		{map[string]string{}, nil, "attribute method"},
		{map[string]string{"method": "m", "protocol": "json"}, nil, `protocol="json"`},
		{map[string]string{"method": "m", "env": "dev"}, nil, `attribute "env": only the header transport`},
		{map[string]string{"method": "m"}, []string{"{}", "{}"}, "one argument"},
		{map[string]string{"method": "m"}, []string{`["a"]`}, "not a JSON object"},
		{map[string]string{"method": "m"}, []string{`{"1:int":1}`}, `unknown type "int"`},
		{map[string]string{"method": "m"}, []string{`{"1:i16":70000}`}, "not a 16-bit integer"},
		{map[string]string{"method": "m"}, []string{`{"1:map<string>":{}}`}, "want map<K,V>"},
		{map[string]string{"method": "m"}, []string{`{"1:binary":"%%"}`}, "binary"},
		{map[string]string{"method": "m"}, []string{`{"1:bool":"yes"}`}, "not a boolean"},
		{map[string]string{"method": "m"}, []string{`{"1":` + strings.Repeat(`{"1":`, 70) + `1` + strings.Repeat(`}`, 71)}, "nested deeper"},
	} {
		if _, err := c.NewRequest(1, tc.attrs, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.attrs, tc.args, err, tc.want)
		}
	}
}

// Args and Answer read what the far end sent: a changed byte gives an
// answer or an error, never a panic, and a count larger than the bytes left
// is refused before anything is allocated for it.
func TestCallerOnCorruptFrames(t *testing.T) {
	for _, proto := range []string{"binary", "compact"} {
		c := newCodec(t, nil)
		req, err := c.NewRequest(1, map[string]string{"method": "m", "protocol": proto},
			[]string{`{"1":"s","2:list<i64>":[1,2],"3:map<string,list<string>>":{"k":["v"]},"4":{"1":true}}`})
		if err != nil {
			t.Fatal(err)
		}
		for i := 4; i < len(req.Raw); i++ {
			for _, b := range []byte{0x00, 0xff, 0x7f, 0x0f, 0x1c} {
				bad := append([]byte(nil), req.Raw...)
				bad[i] = b
				m, err := newCodec(t, nil).Decode(bad)
				if err != nil {
					continue
				}
				if gerr := codec.Guard("Args", func() { _, _ = c.Args(m) }); gerr != nil {
					t.Fatalf("%s byte %d = %#x: %v", proto, i, b, gerr)
				}
			}
		}
	}
	// A binary list of a million strings in a 26-byte frame (the library
	// itself refuses counts over its 100 MB message limit).
	frame := []byte{0, 0, 0, 25, 0x80, 1, 0, msgReply, 0, 0, 0, 1, 'm', 0, 0, 0, 1, 15, 0, 0, 11, 0, 0x0f, 0x42, 0x40, 0}
	frame[3] = byte(len(frame) - 4)
	m, err := newCodec(t, nil).Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newCodec(t, nil).Answer(m); err == nil || !strings.Contains(err.Error(), "container of 1000000 elements") {
		t.Fatalf("a huge list: %v", err)
	}
}
