package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func newServeCmd() *cobra.Command {
	var reply string
	var opts []string
	cmd := &cobra.Command{
		Use:   "serve PROTOCOL ADDR [--reply VALUE]",
		Short: "Answer every call of a protocol with a fixed reply, printing each call received",
		Long: `Serve listens on ADDR (plaintext) and answers every request with the same
successful reply, so routes can be tried without writing a provider. Each
request it gets is printed on stderr: the peer, the attributes and the
arguments. The first line on stderr names the address it listens on (useful
with port 0). It runs until interrupted.

The reply is in the protocol's form (see rosettactl call --help): one JSON
value for dubbo and trpc (trpc replies are JSON-serialized, content type 2),
the result struct by field id for thrift ({"0":"hi"}; field 0 is a method's
return value), and for redis a JSON value written as RESP (a string is a bulk
string, a number an integer, a list an array, null a null). Without --reply
the answer is empty: null for dubbo, an empty body for trpc, an empty struct
for thrift (a void method's answer), +OK for redis.`,
		Example: `  rosettactl serve dubbo 127.0.0.1:20880 --reply '"hello from serve"'
  rosettactl serve redis 127.0.0.1:6380 --reply '"pong"'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, args[0], args[1], opts, reply, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&reply, "reply", "", "the value every request is answered with, in the protocol's form")
	cmd.Flags().StringArrayVar(&opts, "opt", nil, "a codec option as key=value (repeatable)")
	return cmd
}

func runServe(ctx context.Context, protocol, addr string, opts []string, reply string, log io.Writer) error {
	// Check the protocol and options before listening, so a mistake is
	// reported at once. A reply the protocol cannot carry is reported on
	// the first call (stderr), as the codec needs a request to answer.
	if _, _, _, err := callerFor(protocol, opts, codec.PeerClient); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	s := &server{protocol: protocol, opts: opts, reply: reply, log: log}
	fmt.Fprintf(log, "serving %s on %s\n", protocol, ln.Addr())
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
			defer stop()
			s.serveConn(conn)
		})
	}
}

// server answers one protocol's calls.
type server struct {
	protocol string
	opts     []string
	reply    string
	log      io.Writer
	logMu    sync.Mutex
}

// serveConn reads requests until the caller closes, answering each.
func (s *server) serveConn(conn net.Conn) {
	_, c, caller, err := callerFor(s.protocol, s.opts, codec.PeerClient)
	if err != nil {
		s.logf("%s: %v", conn.RemoteAddr(), err)
		return
	}
	var buf []byte
	chunk := make([]byte, maxRead)
	for {
		for len(buf) > 0 {
			sp, err := codec.SafeSplit(c, buf)
			if err != nil {
				s.logf("%s: %v", conn.RemoteAddr(), err)
				return
			}
			if sp.Len == 0 {
				break
			}
			frame := buf[:sp.Len:sp.Len]
			buf = buf[sp.Len:]
			if err := s.answer(conn, c, caller, frame); err != nil {
				s.logf("%s: %v", conn.RemoteAddr(), err)
				return
			}
		}
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil {
			return
		}
	}
}

// answer decodes one frame, prints it and writes the reply.
func (s *server) answer(conn net.Conn, c codec.Codec, caller codec.Caller, frame []byte) error {
	m, err := codec.SafeDecode(c, frame)
	if err != nil {
		if m != nil {
			if r, rerr := c.Reply(m, codec.StatusBadRequest, err.Error()); rerr == nil && r != nil {
				_ = s.write(conn, c, r) // the connection closes next anyway
			}
		}
		return err
	}
	var r *codec.Message
	switch m.Kind {
	case codec.KindHeartbeat:
		if hb, ok := c.(codec.HeartbeatReplier); ok {
			r, err = hb.HeartbeatReply(m)
		}
	case codec.KindRequest, codec.KindOneway:
		s.print(conn, caller, m)
		if m.Kind == codec.KindRequest {
			if gerr := codec.Guard("Respond", func() { r, err = caller.Respond(m, s.reply) }); gerr != nil {
				return gerr
			}
			if err != nil {
				err = fmt.Errorf("--reply %q: %w", s.reply, err)
			}
		}
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if r != nil {
		return s.write(conn, c, r)
	}
	return nil
}

func (s *server) write(conn net.Conn, c codec.Codec, m *codec.Message) error {
	b, err := codec.SafeEncode(c, nil, m)
	if err != nil {
		return err
	}
	_, err = conn.Write(b)
	return err
}

// print writes one line per request: the caller, its kind, its attributes
// sorted by name and its arguments.
func (s *server) print(conn net.Conn, caller codec.Caller, m *codec.Message) {
	var attrs []string
	m.Attrs.Range(func(k, v string) bool {
		attrs = append(attrs, fmt.Sprintf("%s=%q", k, v))
		return true
	})
	sort.Strings(attrs)
	var args string
	var err error
	if gerr := codec.Guard("Args", func() { args, err = caller.Args(m) }); gerr != nil {
		err = gerr
	}
	if err != nil {
		args = "(" + err.Error() + ")"
	}
	s.logf("%s %s %s: %s %s", s.protocol, m.Kind, conn.RemoteAddr(), strings.Join(attrs, " "), args)
}

func (s *server) logf(format string, a ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.log, format+"\n", a...)
}
