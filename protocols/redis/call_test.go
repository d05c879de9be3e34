package redis

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func TestCallerCommand(t *testing.T) {
	c := newCodec(t, nil, codec.PeerServer)
	m, err := c.NewRequest(0, map[string]string{"command": "SET"}, []string{"k", "v w"})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Raw) != "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv w\r\n" {
		t.Fatalf("wire %q", m.Raw)
	}
	if k, _ := m.Get("key"); k != "k" {
		t.Fatalf("key %q", k)
	}
	if a, err := c.Args(m); err != nil || a != `["SET","k","v w"]` {
		t.Fatalf("Args %q %v", a, err)
	}
	for _, tc := range []struct {
		attrs map[string]string
		args  []string
		want  string
	}{
		{nil, nil, "needs a command"},
		{map[string]string{"key": "k"}, []string{"GET"}, `attribute "key"`},
	} {
		if _, err := c.NewRequest(0, tc.attrs, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.attrs, tc.args, err, tc.want)
		}
	}
}

func TestCallerAnswerAndRespond(t *testing.T) {
	c := newCodec(t, nil, codec.PeerServer)
	for _, tc := range []struct{ wire, value, errText string }{
		{"+OK\r\n", `"OK"`, ""},
		{":42\r\n", "42", ""},
		{"$-1\r\n", "null", ""},
		{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", `["a",[1]]`, ""},
		{"%1\r\n+k\r\n#t\r\n", `{"k":true}`, ""},
		{"-WRONGTYPE Operation against a key\r\n", "", "WRONGTYPE Operation against a key"},
	} {
		m, err := c.Decode([]byte(tc.wire))
		if err != nil {
			t.Fatal(err)
		}
		a, err := c.Answer(m)
		if err != nil || a.Value != tc.value || a.Error != tc.errText || (tc.errText != "") != (a.Status != codec.StatusOK) {
			t.Errorf("%q: %+v %v", tc.wire, a, err)
		}
	}
	for _, tc := range []struct{ reply, wire string }{
		{"", "+OK\r\n"},
		{`"x"`, "$1\r\nx\r\n"},
		{`7`, ":7\r\n"},
		{`true`, ":1\r\n"},
		{`null`, "$-1\r\n"},
		{`["a",1]`, "*2\r\n$1\r\na\r\n:1\r\n"},
		{`{"k":"v"}`, "*2\r\n$1\r\nk\r\n$1\r\nv\r\n"},
		{`2.5`, "$3\r\n2.5\r\n"},
	} {
		m, err := c.Respond(nil, tc.reply)
		if err != nil || string(m.Raw) != tc.wire {
			t.Errorf("Respond(%s) = %q, %v; want %q", tc.reply, m.Raw, err, tc.wire)
		}
	}
	if _, err := c.Respond(nil, "{bad"); err == nil {
		t.Error("a reply that is not JSON was taken")
	}
	if _, err := c.Respond(nil, strings.Repeat("[", 40)+strings.Repeat("]", 40)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep reply: %v", err)
	}
}
