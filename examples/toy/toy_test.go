package toy_test

import (
	"bytes"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/codec/codectest"
)

func frame(t *testing.T, kind byte, id uint64, status byte, h map[string]string, body string) []byte {
	t.Helper()
	f, err := toy.AppendFrame(nil, kind, id, status, h, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestConformance(t *testing.T) {
	p, ok := codec.Lookup(toy.Name)
	if !ok {
		t.Fatal("toy is not registered")
	}
	codectest.Run(t, codectest.Suite{
		Protocol: p,
		Requests: [][]byte{
			frame(t, toy.KindRequest, 1, 0, map[string]string{"method": "ping"}, "hello"),
			frame(t, toy.KindOneway, 2, 0, map[string]string{"method": "fire"}, ""),
		},
		Responses: [][]byte{
			frame(t, toy.KindResponse, 1, 0, map[string]string{"server": "a"}, "pong"),
			frame(t, toy.KindResponse, 3, 1, nil, "failed"),
		},
		Oversized: []byte{0x7f, 0xff, 0xff, 0xff},
		MaxFrame:  toy.MaxFrame,
		Mutation:  &codec.Attr{Key: "env", Value: "canary"},
		CheckReply: func(t *testing.T, req *codec.Message, st codec.Status, reply []byte) {
			// The toy client is the protocol's own library: its reading of the
			// reply must be an error naming the status.
			var r toy.Response
			m, err := toy.Codec{}.Decode(reply)
			if err != nil {
				t.Fatal(err)
			}
			r.Status = m.Raw[13]
			if err := r.Err(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(st.String())) {
				t.Fatalf("the client read reply %v as %v", st, err)
			}
		},
	})
}
