package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/thriftpeer"
)

// The tests of call and serve run the built rosettactl, as users do,
// against real peers: a Dubbo provider and consumer written with the
// hessian2 library dubbo-go uses, the Echo service's generated Thrift
// server and client, redis-server and redis-cli, and rosetta-proxy routing
// between two serve processes. dubbo-go and trpc-go themselves are in the
// e2e modules (e2e/dubbo, e2e/trpc).

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binary builds ./cmd/<name> once per test process.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rosettactl-test-")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	bin := filepath.Join(buildDir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := testutil.Build(filepath.Join("..", ".."), bin, "./cmd/"+name); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ctl runs the built rosettactl and returns stdout and its error (an
// *exec.ExitError for a non-zero exit).
func ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t, "rosettactl"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// callJSON runs call with --output json and decodes the result; a
// non-zero exit is returned with it.
func callJSON(t *testing.T, args ...string) (callResult, error) {
	t.Helper()
	out, err := ctl(t, append([]string{"call", "-o", "json"}, args...)...)
	var r callResult
	if i := strings.Index(out, "{"); i >= 0 {
		if jerr := json.NewDecoder(strings.NewReader(out[i:])).Decode(&r); jerr != nil {
			t.Fatalf("call %v: output is not JSON: %v\n%s", args, jerr, out)
		}
	} else {
		t.Fatalf("call %v: no result (%v):\n%s", args, err, out)
	}
	return r, err
}

func mustCall(t *testing.T, args ...string) callResult {
	t.Helper()
	r, err := callJSON(t, args...)
	if err != nil || r.Status != "ok" {
		t.Fatalf("call %v: %v, %+v", args, err, r)
	}
	return r
}

// serveRe is serve's first line on stderr.
var serveRe = regexp.MustCompile(`serving \w+ on (\S+)`)

// startServe runs rosettactl serve on a free port and returns it with its
// address.
func startServe(t *testing.T, protocol, reply string) (*testutil.Process, string) {
	t.Helper()
	args := []string{"serve", protocol, "127.0.0.1:0"}
	if reply != "" {
		args = append(args, "--reply", reply)
	}
	p := testutil.StartT(t, testutil.Command{Name: "serve-" + protocol, Path: binary(t, "rosettactl"), Args: args})
	m, err := p.WaitLog(10*time.Second, serveRe)
	if err != nil {
		t.Fatal(err)
	}
	return p, m[1]
}

// logged waits for serve to print a line matching re.
func logged(t *testing.T, p *testutil.Process, re string) {
	t.Helper()
	if _, err := p.WaitLog(5*time.Second, regexp.MustCompile(re)); err != nil {
		t.Fatal(err)
	}
}

func TestCallDubboProvider(t *testing.T) {
	prov, err := dubbopeer.Serve("127.0.0.1:0", "p1", func(_ context.Context, r *dubbopeer.Request) (any, error) {
		switch r.Method {
		case "fail":
			return nil, errors.New("it failed")
		case "m":
			return fmt.Sprintf("%T %T", r.Args[0], r.Args[1]), nil
		case "missing":
			return nil, &dubbopeer.StatusError{Status: dubbopeer.StatusServiceNotFound, Message: "no such service"}
		}
		return fmt.Sprintf("%s %v %v", r.Method, r.Args, r.Attachments["env"]), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Close() })
	addr := prov.Addr()
	base := []string{"dubbo", addr, "--attr", "interface=org.example.Greeter"}

	r := mustCall(t, append(base, "--attr", "method=sayHello", "--arg", `"world"`, "--arg", "7", "--arg", `[1,"a"]`, "--attr", "env=dev")...)
	if r.Value != `"sayHello [world 7 [1 a]] dev"` || r.Code != "20 OK" {
		t.Fatalf("answer %+v", r)
	}
	// --types makes 7 a long (it would be an int) and 2.5 a double.
	r = mustCall(t, append(base, "--attr", "method=m", "--types", "JD", "--arg", "7", "--arg", "2.5")...)
	if r.Value != `"int64 float64"` {
		t.Fatalf("typed answer %+v", r)
	}
	r, err = callJSON(t, append(base, "--attr", "method=fail")...)
	if err == nil || r.Status != "error" || !strings.Contains(r.Error, "it failed") {
		t.Fatalf("exception: %v %+v", err, r)
	}
	r, err = callJSON(t, append(base, "--attr", "method=missing")...)
	if err == nil || r.Status != "error" || !strings.HasPrefix(r.Code, "60") || r.Error != "no such service" {
		t.Fatalf("status 60: %v %+v", err, r)
	}
	if out, err := ctl(t, "call", "dubbo", addr, "--attr", "method=m"); err == nil || !strings.Contains(out, "interface and method") {
		t.Fatalf("a call without an interface: %v\n%s", err, out)
	}
	if out, err := ctl(t, "call", "dubbo", addr, "--attr", "interface=I", "--attr", "method=m", "--arg", "{bad"); err == nil || !strings.Contains(out, "argument 1") {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
}

func TestServeDubboConsumer(t *testing.T) {
	p, addr := startServe(t, "dubbo", `{"greeting":"hi","n":3}`)
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	v, _, err := c.Call(ctx, dubbopeer.Service{Interface: "org.example.Greeter", Version: "1.0"}, "sayHello", []any{"world"}, map[string]string{"env": "dev"})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[any]any)
	if !ok || m["greeting"] != "hi" || m["n"] != int32(3) {
		t.Fatalf("reply %#v", v)
	}
	logged(t, p, `dubbo request .* env="dev" interface="org.example.Greeter" method="sayHello" .*version="1.0" types="Ljava/lang/String;" args=\["world"\]`)
}

func TestCallAndServeThrift(t *testing.T) {
	for _, f := range []thriftpeer.Format{{}, {Transport: "buffered", Protocol: "compact"}, {Transport: "header"}, {Transport: "header", Protocol: "compact"}} {
		t.Run(strings.ReplaceAll(f.String(), " ", "_"), func(t *testing.T) {
			s, err := thriftpeer.Serve("127.0.0.1:0", "t1", f)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			format := []string{"--attr", "transport=" + f.Transport, "--attr", "protocol=" + f.Protocol}
			if f.Transport == "" {
				format = nil
			}
			args := append([]string{"thrift", s.Addr(), "--attr", "method=ping", "--arg", `{"1":"hi"}`}, format...)
			if r := mustCall(t, args...); r.Value != `{"0":"t1: pong hi"}` {
				t.Fatalf("ping: %+v", r)
			}
			// echo(1: Payload): a struct with typed fields; Oops is field 1 of the result.
			args = append([]string{"thrift", s.Addr(), "--attr", "method=echo", "--arg",
				`{"1":{"1":"txt","2:i32":5,"8:binary":"AAE="}}`}, format...)
			r := mustCall(t, args...)
			var res map[string]map[string]any
			if err := json.Unmarshal([]byte(r.Value), &res); err != nil || res["0"]["1"] != "t1: txt" || res["0"]["2"] != 5.0 || res["0"]["8"] != "base64:AAE=" {
				t.Fatalf("echo: %v %+v", err, r)
			}
			args = append([]string{"thrift", s.Addr(), "--attr", "method=echo", "--arg", `{"1":{"1":"oops"}}`}, format...)
			if r, err := callJSON(t, args...); err == nil || r.Status != "error" || !strings.Contains(r.Value, `"1":{"1":"t1: oops"}`) {
				t.Fatalf("declared exception: %v %+v", err, r)
			}
			args = append([]string{"thrift", s.Addr(), "--attr", "method=nope"}, format...)
			if r, err := callJSON(t, args...); err == nil || r.Code != "TApplicationException 1" {
				t.Fatalf("unknown method: %v %+v", err, r)
			}

			p, addr := startServe(t, "thrift", `{"0":"served"}`)
			c, err := thriftpeer.Dial(addr, f)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.Ping(context.Background(), "from a generated client")
			if err != nil || got != "served" {
				t.Fatalf("generated client through serve: %q, %v", got, err)
			}
			logged(t, p, `thrift request .* method="ping" \{"1":"from a generated client"\}`)
		})
	}
}

func TestCallAndServeRedis(t *testing.T) {
	addr := testutil.RedisServer(t)
	mustCall(t, "redis", addr, "--arg", "SET", "--arg", "k", "--arg", "v")
	if r := mustCall(t, "redis", addr, "--attr", "command=GET", "--arg", "k"); r.Value != `"v"` {
		t.Fatalf("GET: %+v", r)
	}
	mustCall(t, "redis", addr, "--arg", "RPUSH", "--arg", "l", "--arg", "a", "--arg", "b")
	if r := mustCall(t, "redis", addr, "--arg", "LRANGE", "--arg", "l", "--arg", "0", "--arg", "-1"); r.Value != `["a","b"]` {
		t.Fatalf("LRANGE: %+v", r)
	}
	if r, err := callJSON(t, "redis", addr, "--arg", "INCR", "--arg", "l"); err == nil || r.Code != "WRONGTYPE" {
		t.Fatalf("error answer: %v %+v", err, r)
	}

	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli: %v (install Debian's redis-tools)", err)
	}
	p, saddr := startServe(t, "redis", `["x",1,null]`)
	host, port, _ := strings.Cut(saddr, ":")
	out, err := exec.Command(cli, "-h", host, "-p", port, "GET", "anything").CombinedOutput()
	if err != nil || string(out) != "x\n1\n\n" {
		t.Fatalf("redis-cli through serve: %v %q", err, out)
	}
	logged(t, p, `redis request .* command="GET" .*\["GET","anything"\]`)
}

// TestCallThroughProxyToServe routes on an attribute: rosetta-proxy with
// the shipped example config sends sayHello to one serve process and every
// other method to another.
func TestCallThroughProxyToServe(t *testing.T) {
	_, hello := startServe(t, "dubbo", `"from hello"`)
	_, other := startServe(t, "dubbo", `"from other"`)
	example, err := os.ReadFile("../../examples/dubbo/proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	config := strings.NewReplacer(
		"port_value: 20880", fmt.Sprint("port_value: ", portOf(listen)),
		"port_value: 20881", fmt.Sprint("port_value: ", portOf(hello)),
		"port_value: 20882", fmt.Sprint("port_value: ", portOf(other)),
		"address: 127.0.0.1:15000", "address: 127.0.0.1:0",
	).Replace(string(example))
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	px := testutil.StartT(t, testutil.Command{Name: "rosetta-proxy", Path: binary(t, "rosetta-proxy"), Args: []string{"--config", path}})
	if err := px.Ready(20*time.Second, "to listen", testutil.Dialable(listen)); err != nil {
		t.Fatal(err)
	}
	base := []string{"dubbo", listen, "--attr", "interface=org.example.Greeter"}
	if r := mustCall(t, append(base, "--attr", "method=sayHello", "--arg", `"x"`)...); r.Value != `"from hello"` {
		t.Fatalf("sayHello: %+v", r)
	}
	if r := mustCall(t, append(base, "--attr", "method=sayGoodbye", "--arg", `"x"`)...); r.Value != `"from other"` {
		t.Fatalf("sayGoodbye: %+v", r)
	}
}

func TestCallErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "nosuch", "127.0.0.1:1"}, `unknown protocol "nosuch" (registered: dubbo, redis, thrift, trpc)`},
		{[]string{"call", "dubbo", "127.0.0.1:1", "--attr", "novalue"}, `--attr "novalue": want key=value`},
		{[]string{"call", "thrift", "127.0.0.1:1", "--attr", "method=m", "--attr", "transport=ws"}, `transport="ws"`},
		{[]string{"call", "thrift", "127.0.0.1:1", "--attr", "method=m", "--arg", `{"x":1}`}, `field key "x"`},
		{[]string{"call", "redis", "127.0.0.1:1", "--arg", "PING", "-o", "xml"}, `--output "xml"`},
		{[]string{"call", "redis", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "--arg", "PING"}, "connection refused"},
	} {
		out, err := ctl(t, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%v: %v, want %q in:\n%s", c.args, err, c.want, out)
		}
	}
}

// TestCallTimeout: a server that never answers fails the call within
// --timeout.
func TestCallTimeout(t *testing.T) {
	ln := testutil.Listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	out, err := ctl(t, "call", "redis", ln.Addr().String(), "--arg", "PING", "--timeout", "300ms")
	if err == nil || !strings.Contains(out, "no answer from") || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %s:\n%s", err, time.Since(start), out)
	}
}

// TestCallTLS: --tls verifies the server against --cacert and the server
// name; a TLS terminator in front of a real redis-server stands for a
// server that speaks TLS.
func TestCallTLS(t *testing.T) {
	redisAddr := testutil.RedisServer(t)
	caPEM, cert := selfSigned(t, "localhost")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", redisAddr)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if r := mustCall(t, "redis", addr, "--tls", "--cacert", ca, "--server-name", "localhost", "--arg", "PING"); r.Value != `"PONG"` {
		t.Fatalf("PING over TLS: %+v", r)
	}
	if out, err := ctl(t, "call", "redis", addr, "--tls", "--server-name", "localhost", "--arg", "PING"); err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("an untrusted certificate: %v\n%s", err, out)
	}
	if out, err := ctl(t, "call", "redis", addr, "--tls", "--cacert", ca, "--server-name", "other", "--arg", "PING"); err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("the wrong server name: %v\n%s", err, out)
	}
	if r := mustCall(t, "redis", addr, "--tls", "--insecure", "--arg", "PING"); r.Value != `"PONG"` {
		t.Fatalf("--insecure: %+v", r)
	}
}

// selfSigned makes a self-signed certificate for name, returned as PEM (to
// trust) and as a tls.Certificate (to serve).
func selfSigned(t *testing.T, name string) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
