package dubbo

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// The request NewRequest builds is read back by hessian2's own Dubbo codec:
// the leading strings, the descriptor, every argument with its type, and
// the attachments.
func TestNewRequestReadByTheLibrary(t *testing.T) {
	c := newTestCodec(t)
	m, err := c.NewRequest(7, map[string]string{
		"interface": "org.example.Greeter", "method": "sayHello", "version": "1.0", "group": "blue", "env": "dev",
	}, []string{`"world"`, `7`, `5000000000`, `2.5`, `true`, `null`, `[1,"a"]`, `{"k":"v"}`})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != codec.KindRequest || m.ID != 7 {
		t.Fatalf("kind %s id %d", m.Kind, m.ID)
	}
	f, err := libDecode(m.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if f.Req[0] != "2.0.2" || f.Req[1] != "org.example.Greeter" || f.Req[2] != "1.0" || f.Req[3] != "sayHello" ||
		f.Req[4] != "Ljava/lang/String;IJDZLjava/lang/Object;Ljava/util/List;Ljava/util/Map;" {
		t.Fatalf("leading values %q", f.Req[:5])
	}
	args := f.Req[5].([]any)
	if args[0] != "world" || args[1] != int32(7) || args[2] != int64(5000000000) || args[3] != 2.5 || args[4] != true || args[5] != nil {
		t.Fatalf("arguments %#v", args)
	}
	atts := f.Req[6].(map[string]string)
	if atts["group"] != "blue" || atts["env"] != "dev" || atts["path"] != "org.example.Greeter" {
		t.Fatalf("attachments %v", atts)
	}
	if got, _ := m.Get("env"); got != "dev" {
		t.Fatalf("the codec reads env=%q", got)
	}
	if a, err := c.Args(m); err != nil || a != `types="Ljava/lang/String;IJDZLjava/lang/Object;Ljava/util/List;Ljava/util/Map;" args=["world",7,5000000000,2.5,true,null,[1,"a"],{"k":"v"}]` {
		t.Fatalf("Args: %q, %v", a, err)
	}
}

func TestNewRequestTypes(t *testing.T) {
	c := newTestCodec(t)
	base := map[string]string{"interface": "I", "method": "m"}
	with := func(types string) map[string]string {
		m := map[string]string{"types": types}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	m, err := c.NewRequest(1, with("JD[Ljava/lang/String;"), []string{"7", "2", `["a"]`})
	if err != nil {
		t.Fatal(err)
	}
	f, err := libDecode(m.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if args := f.Req[5].([]any); args[0] != int64(7) || args[1] != 2.0 {
		t.Fatalf("typed arguments %#v", args)
	}
	for _, tc := range []struct {
		attrs map[string]string
		args  []string
		want  string
	}{
		{map[string]string{"method": "m"}, nil, "interface and method"},
		{base, []string{"{bad"}, "argument 1"},
		{base, []string{`"a" "b"`}, "text after the value"},
		{with("I"), []string{"1", "2"}, "names 1 parameters, the call has 2"},
		{with("Q"), []string{"1"}, `unknown type 'Q'`},
		{with("Ljava/lang/String"), []string{`"a"`}, "has no ';'"},
		{with("I"), []string{"2.5"}, "not a 32-bit integer"},
		{with("I"), []string{"4294967296"}, "not a 32-bit integer"},
	} {
		if _, err := c.NewRequest(1, tc.attrs, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.attrs, tc.args, err, tc.want)
		}
	}
}

// Respond's answer is read by the library as the value; Answer shows the
// answers a provider sends.
func TestRespondAndAnswer(t *testing.T) {
	c := newTestCodec(t)
	req, err := c.NewRequest(9, map[string]string{"interface": "I", "method": "m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Respond(req, `{"a":[1,2]}`)
	if err != nil {
		t.Fatal(err)
	}
	f, err := libDecode(r.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.ID != 9 || f.Rsp.RspObj.(map[any]any)["a"].([]any)[1] != int32(2) {
		t.Fatalf("library read %+v %#v", f.Header, f.Rsp.RspObj)
	}
	if a, err := c.Answer(r); err != nil || a.Value != `{"a":[1,2]}` || a.Status != codec.StatusOK || a.Code != "20 OK" {
		t.Fatalf("Answer %+v %v", a, err)
	}
	null, _ := c.Respond(req, "")
	if a, err := c.Answer(null); err != nil || a.Value != "null" {
		t.Fatalf("null: %+v %v", a, err)
	}
	local, err := c.Reply(req, codec.StatusNoRoute, "no route")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := c.Answer(local); err != nil || a.Status == codec.StatusOK || a.Code != "60 SERVICE_NOT_FOUND" || a.Error != "no route" {
		t.Fatalf("a proxy's reply: %+v %v", a, err)
	}
	if _, err := c.Respond(req, "nope"); err == nil {
		t.Fatal("a reply that is not JSON was taken")
	}
	if _, err := c.Answer(req); err == nil {
		t.Fatal("Answer took a request")
	}
}

// Args and Answer read what a caller or server sent: any byte changed in a
// body gives an answer or an error, never a panic.
func TestCallerOnCorruptFrames(t *testing.T) {
	c := newTestCodec(t)
	req, err := c.NewRequest(1, map[string]string{"interface": "I", "method": "m", "k": "v"}, []string{`"s"`, `[1,{"a":true}]`, `2.5`})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Respond(req, `{"a":["x",1,null]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, frame := range [][]byte{req.Raw, resp.Raw} {
		for i := headerLen; i < len(frame); i++ {
			for _, b := range []byte{0x00, 0xff, 0x55, 0x7f, 0x30} {
				bad := append([]byte(nil), frame...)
				bad[i] = b
				m, err := c.Decode(bad)
				if err != nil {
					continue
				}
				if gerr := codec.Guard("caller", func() {
					if m.Kind == codec.KindResponse {
						_, _ = c.Answer(m)
					} else {
						_, _ = c.Args(m)
					}
				}); gerr != nil {
					t.Fatalf("byte %d = %#x: %v", i, b, gerr)
				}
			}
		}
	}
}

// A list that claims two billion elements in a few bytes is refused before
// the library would allocate it.
func TestAnswerRefusesAHugeCount(t *testing.T) {
	c := newTestCodec(t)
	body := []byte{0x91, 0x58, 'I', 0x7f, 0xff, 0xff, 0xff, 0x91}
	b := append(header(serialHessian2, statusOK, 3, uint32(len(body))), body...)
	m, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Answer(m); err == nil || !strings.Contains(err.Error(), "response value") {
		t.Fatalf("a list of 2^31-1 elements in one byte: %v", err)
	}
}
