package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// callFlags are what `rosettactl call` is given besides the protocol and
// the address.
type callFlags struct {
	attrs   []string
	args    []string
	types   string
	opts    []string
	timeout time.Duration
	tls     tlsFlags
}

// tlsFlags set up TLS to the server; without --tls the call is plaintext.
type tlsFlags struct {
	on         bool
	caFile     string
	serverName string
	insecure   bool
}

// callResult is what one call gave: printed for people, or as JSON or
// YAML with --output.
type callResult struct {
	Protocol string        `json:"protocol"`
	Address  string        `json:"address"`
	Status   string        `json:"status"`
	Code     string        `json:"code,omitempty"`
	Value    string        `json:"value,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"-"`
	Millis   float64       `json:"duration_ms"`
}

// errStatus is returned when the answer's status is not OK: the result is
// printed, and the exit code is 1.
var errStatus = errors.New("the call failed")

func newCallCmd() *cobra.Command {
	var f callFlags
	cmd := &cobra.Command{
		Use:   "call PROTOCOL ADDR [--attr key=value]... [--arg VALUE]...",
		Short: "Send one request of any registered protocol and print its answer",
		Long: `Call sends one request to ADDR (a server, or a Rosetta proxy in front of one)
and prints the answer, its status and the time taken; the exit code is 1 when
the answer is an error. The request is built by the protocol's codec from the
attributes and arguments given:

  dubbo   --attr interface=I --attr method=M [version, group, dubbo_version];
          any other attribute is an attachment. Each --arg is one JSON value
          (string, number, boolean, null, list, object); the parameter types
          are derived from them, or given with --types 'Ljava/lang/String;I'.
  thrift  --attr method=M [service=S for a multiplexed server; transport=
          framed|buffered|header; protocol=binary|compact]. One --arg: the
          argument struct as JSON by field id, {"1":"world"}, with a type
          in the key where the value does not say it: {"1:i32":5}.
  trpc    --attr callee=C --attr func=/pkg.Service/Method [caller;
          trans_info.K=V; content_type=json|pb|raw]. One --arg: the body,
          JSON by default, or hex:... / text:... for raw bytes.
  redis   each --arg is one word of the command: --arg SET --arg k --arg v.

The connection is plaintext unless --tls is given.`,
		Example: `  rosettactl call dubbo 127.0.0.1:20880 --attr interface=org.example.Greeter --attr method=sayHello --arg '"world"'
  rosettactl call thrift 127.0.0.1:9090 --attr method=ping --arg '{"1":"hi"}'
  rosettactl call trpc 127.0.0.1:8000 --attr callee=trpc.test.helloworld.Greeter --attr func=/trpc.test.helloworld.Greeter/SayHello --arg '"world"'
  rosettactl call redis 127.0.0.1:6379 --arg GET --arg session:1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := runCall(cmd.Context(), args[0], args[1], f)
			if err != nil {
				return err
			}
			if err := printResult(cmd, res, func(w io.Writer) error { return printCall(w, res) }); err != nil {
				return err
			}
			if res.Status != codec.StatusOK.String() {
				return fmt.Errorf("%w: status %s", errStatus, res.Status)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.attrs, "attr", nil, "a request attribute as key=value (repeatable)")
	fs.StringArrayVar(&f.args, "arg", nil, "an argument, in the protocol's form (repeatable)")
	fs.StringVar(&f.types, "types", "", "Dubbo's parameter type descriptor (the same as --attr types=...)")
	fs.StringArrayVar(&f.opts, "opt", nil, "a codec option as key=value, as a listener's codec options (repeatable)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "time for the whole call: connecting, sending and the answer")
	f.tls.register(cmd)
	return cmd
}

func (t *tlsFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&t.on, "tls", false, "connect with TLS")
	fs.StringVar(&t.caFile, "cacert", "", "PEM file of the CAs to trust (with --tls; the system's by default)")
	fs.StringVar(&t.serverName, "server-name", "", "server name to verify (with --tls; the host of ADDR by default)")
	fs.BoolVar(&t.insecure, "insecure", false, "do not verify the server's certificate (with --tls)")
}

// config is the TLS client config the flags describe.
func (t tlsFlags) config() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.serverName, InsecureSkipVerify: t.insecure, MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", t.caFile)
		}
	}
	return cfg, nil
}

// callerFor makes the named protocol's codec for peer and checks it can
// build requests: the registry is the only way in.
func callerFor(protocol string, opts []string, peer codec.Peer) (codec.Protocol, codec.Codec, codec.Caller, error) {
	p, ok := codec.Lookup(protocol)
	if !ok {
		return p, nil, nil, fmt.Errorf("unknown protocol %q (registered: %s)", protocol, strings.Join(codec.Names(), ", "))
	}
	o, err := parseOpts(opts)
	if err != nil {
		return p, nil, nil, err
	}
	c, err := p.New(o, peer)
	if err != nil {
		return p, nil, nil, err
	}
	caller, ok := c.(codec.Caller)
	if !ok {
		return p, nil, nil, fmt.Errorf("protocol %q cannot build requests from the command line (its codec is not a codec.Caller)", protocol)
	}
	return p, c, caller, nil
}

func parseOpts(kvs []string) (codec.Options, error) {
	o := codec.Options{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--opt %q: want key=value", kv)
		}
		o[k] = v
	}
	return o, nil
}

// callID is the request ID of the one request call sends.
const callID = 1

func runCall(ctx context.Context, protocol, addr string, f callFlags) (*callResult, error) {
	p, c, caller, err := callerFor(protocol, f.opts, codec.PeerServer)
	if err != nil {
		return nil, err
	}
	attrs, err := parseAttrs(f.attrs)
	if err != nil {
		return nil, err
	}
	if f.types != "" {
		attrs["types"] = f.types
	}
	var req *codec.Message
	if gerr := codec.Guard("NewRequest", func() { req, err = caller.NewRequest(callID, attrs, f.args) }); gerr != nil {
		return nil, gerr
	}
	if err != nil {
		return nil, err
	}
	wire, err := codec.SafeEncode(c, nil, req)
	if err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	start := time.Now()
	conn, err := dial(ctx, addr, f.tls)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline) // a net.Conn that refuses deadlines has none to miss
	if _, err := conn.Write(wire); err != nil {
		return nil, fmt.Errorf("sending the request to %s: %w", addr, err)
	}
	resp, err := readAnswer(conn, c, p.Ordering == codec.ByID)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("no answer from %s within %s", addr, f.timeout)
		}
		return nil, err
	}
	took := time.Since(start)
	var a codec.Answer
	if gerr := codec.Guard("Answer", func() { a, err = caller.Answer(resp) }); gerr != nil {
		return nil, gerr
	}
	if err != nil {
		return nil, err
	}
	return &callResult{
		Protocol: protocol, Address: addr, Status: a.Status.String(), Code: a.Code,
		Value: a.Value, Error: a.Error, Duration: took, Millis: float64(took.Microseconds()) / 1000,
	}, nil
}

func dial(ctx context.Context, addr string, t tlsFlags) (net.Conn, error) {
	if !t.on {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	cfg, err := t.config()
	if err != nil {
		return nil, err
	}
	d := tls.Dialer{Config: cfg}
	return d.DialContext(ctx, "tcp", addr)
}

// maxRead caps one read's buffer growth; the codec's Split caps a frame.
const maxRead = 64 << 10

// readAnswer reads frames from conn until the answer to the request comes:
// the response with callID (byID), or the first response (in order). A
// keep-alive from the server on the way is answered when the codec can.
func readAnswer(conn net.Conn, c codec.Codec, byID bool) (*codec.Message, error) {
	var buf []byte
	chunk := make([]byte, maxRead)
	for {
		for len(buf) > 0 {
			s, err := codec.SafeSplit(c, buf)
			if err != nil {
				return nil, err
			}
			if s.Len == 0 {
				break
			}
			frame := buf[:s.Len:s.Len]
			buf = buf[s.Len:]
			m, err := codec.SafeDecode(c, frame)
			if err != nil {
				return nil, err
			}
			switch {
			case m.Kind == codec.KindResponse && (!byID || m.ID == callID):
				return m, nil
			case m.Kind == codec.KindHeartbeat:
				if err := answerHeartbeat(conn, c, m); err != nil {
					return nil, err
				}
			}
		}
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("the server closed the connection before answering")
			}
			return nil, err
		}
	}
}

func answerHeartbeat(conn net.Conn, c codec.Codec, m *codec.Message) error {
	hb, ok := c.(codec.HeartbeatReplier)
	if !ok {
		return nil
	}
	r, err := hb.HeartbeatReply(m)
	if err != nil || r == nil {
		return err
	}
	b, err := codec.SafeEncode(c, nil, r)
	if err != nil {
		return err
	}
	_, err = conn.Write(b)
	return err
}

// printCall is a call's answer for people (--output table).
func printCall(w io.Writer, r *callResult) error {
	fmt.Fprintf(w, "status: %s", r.Status)
	if r.Code != "" {
		fmt.Fprintf(w, " (%s)", r.Code)
	}
	fmt.Fprintf(w, "\ntime:   %s\n", r.Duration.Round(10*time.Microsecond))
	if r.Error != "" {
		fmt.Fprintf(w, "error:  %s\n", r.Error)
	}
	if r.Value != "" {
		fmt.Fprintf(w, "value:  %s\n", r.Value)
	}
	return nil
}
