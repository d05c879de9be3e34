package redis

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/codec/codectest"
)

func TestConformance(t *testing.T) {
	p, ok := codec.Lookup(Name)
	if !ok {
		t.Fatal("redis is not registered")
	}
	reqs, answers := captures(t)
	// The kit mutates the first request: put the keyed commands before the
	// connection handshake (HELLO, CLIENT) that opens the capture.
	for len(reqs) > 0 && !hasKey(t, reqs[0]) {
		reqs = append(reqs[1:], reqs[0])
	}
	codectest.Run(t, codectest.Suite{
		Protocol:   p,
		Requests:   reqs,
		Responses:  answers,
		Oversized:  []byte("*1\r\n$9000000\r\n"),
		Mutation:   &codec.Attr{Key: AttrKey, Value: "renamed"},
		CheckReply: checkReply,
	})
}

// checkReply has go-redis read the reply as a server's answer to GET: it must
// come back as a Redis error with the reply's text.
func checkReply(t *testing.T, _ *codec.Message, st codec.Status, reply []byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err, "listen")
	defer ln.Close()
	go serveOnly(ln, reply)
	c := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String(), Protocol: 2, MaxRetries: -1})
	defer c.Close()
	cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = c.Get(cx, "k").Err()
	var rerr goredis.Error
	want := strings.TrimSuffix(string(reply[1:]), "\r\n")
	if !errors.As(err, &rerr) || rerr.Error() != want {
		t.Fatalf("go-redis read the %v reply %q as %v, want the Redis error %q", st, reply, err, want)
	}
}

// serveOnly answers every command on every connection with reply.
func serveOnly(ln net.Listener, reply []byte) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			c, _ := New(nil, codec.PeerClient)
			var buf []byte
			tmp := make([]byte, 4096)
			for {
				n, err := nc.Read(tmp)
				if err != nil {
					return
				}
				buf = append(buf, tmp[:n]...)
				for {
					sp, err := c.Split(buf)
					if err != nil {
						return
					}
					if sp.Len == 0 {
						break
					}
					buf = buf[sp.Len:]
					if _, err := nc.Write(reply); err != nil {
						return
					}
				}
			}
		}()
	}
}

func hasKey(t *testing.T, frame []byte) bool {
	m, err := decodeRequest(frame, codec.DefaultMaxFrame)
	must(t, err, "decode %q", frame)
	_, ok := m.Get(AttrKey)
	return ok
}
