package trpc_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// rosettactl call and serve against trpc-go v1.0.3 itself: call reaches a
// trpc-go server, and a trpc-go client gets serve's fixed reply.

func buildRosettactl(t *testing.T) string {
	t.Helper()
	return testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosettactl")
}

func TestRosettactlCallsTrpcGoServer(t *testing.T) {
	bin := buildRosettactl(t)
	addr := startServer(t, "s1")
	base := []string{"trpc", addr, "--attr", "callee=" + serviceName, "--attr", "caller=trpc.rosetta.ctl"}

	// A JSON body: trpc-go reads it with protojson and answers in JSON.
	r, err := testutil.CtlCall(t, bin, append(base, "--attr", "func="+sayHello, "--arg", `"world"`)...)
	if err != nil || r.Status != "ok" || r.Value != `"s1: hello world"` {
		t.Fatalf("SayHello as JSON: %v %+v", err, r)
	}
	// A protobuf body given as bytes: StringValue{value: "world"}.
	r, err = testutil.CtlCall(t, bin, append(base, "--attr", "func="+sayHello, "--attr", "content_type=pb", "--arg", "hex:0a05776f726c64")...)
	if err != nil || r.Value != "hex:"+"0a0f"+"73313a2068656c6c6f20776f726c64" {
		t.Fatalf("SayHello as protobuf: %v %+v", err, r)
	}
	r, err = testutil.CtlCall(t, bin, append(base, "--attr", "func="+failHello, "--arg", `"x"`)...)
	if err == nil || r.Status != "error" || r.Code != "ret 0 func_ret 1001" || r.Error != "s1: no hello for x" {
		t.Fatalf("FailHello: exit %v, %+v", err, r)
	}
	r, err = testutil.CtlCall(t, bin, append(base, "--attr", "func=/trpc.rosetta.test.Greeter/Nope")...)
	if err == nil || r.Status != "error" || !strings.HasPrefix(r.Code, "ret 12 ") {
		t.Fatalf("an unknown func: exit %v, %+v", err, r)
	}
}

func TestTrpcGoClientCallsServe(t *testing.T) {
	bin := buildRosettactl(t)
	serve := testutil.StartT(t, testutil.Command{Name: "rosettactl-serve", Path: bin,
		Args: []string{"serve", "trpc", "127.0.0.1:0", "--reply", `"from serve"`}})
	m, err := serve.WaitLog(10*time.Second, regexp.MustCompile(`serving trpc on (\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The client sends protobuf; serve answers in JSON, which trpc-go
	// decodes by the answer's content type.
	got, err := callHello(ctx, sayHello, "x", clientOpts(m[1])...)
	if err != nil || got != "from serve" {
		t.Fatalf("SayHello through serve: %q, %v", got, err)
	}
	if _, err := serve.WaitLog(5*time.Second, regexp.MustCompile(
		`trpc request .*callee="trpc.rosetta.test.Greeter" .*func="/trpc.rosetta.test.Greeter/SayHello" content_type=0 body=hex:0a0178`)); err != nil {
		t.Fatal(err)
	}
}
