package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/trpc/cmd/internal/greeter"
)

// row returns the table row that starts with first, split on runs of spaces.
func row(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		if len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

func count(t *testing.T, cell string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.Fields(cell)[0])
	if err != nil {
		t.Fatalf("cell %q: %v", cell, err)
	}
	return n
}

// TestDemo: with examples/trpc/proxy.yaml, every SayHello lands on the
// hello server and every SayHi on the other one; a function the server
// lacks comes back as trpc-go's framework error from that server.
func TestDemo(t *testing.T) {
	greeter.Quiet()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, options{calls: 100, concurrency: 4}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	// FUNC ROUTE CONFIGURED hello other ERRORS
	hello := row(t, s, greeter.SayHello)
	if hello[1] != "say-hello" || hello[2] != "hello" || count(t, hello[3]) != 100 || count(t, hello[4]) != 0 || hello[5] != "0" {
		t.Errorf("SayHello row %q, want all 100 on hello", hello)
	}
	hi := row(t, s, greeter.SayHi)
	if hi[1] != "default" || hi[2] != "other" || count(t, hi[3]) != 0 || count(t, hi[4]) != 100 || hi[5] != "0" {
		t.Errorf("SayHi row %q, want all 100 on other", hi)
	}
	for _, want := range []string{
		`SayHello("rosetta") -> "hello: hello rosetta"`,
		`SayHi("rosetta") -> "other: hi rosetta"`,
		"tRPC framework error 12", // trpc-go's RetServerNoFunc
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestDemoBadConfig: a missing file and a config for another codec are
// refused with an error naming the problem.
func TestDemoBadConfig(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, &out, options{configFile: "/no/such.yaml", calls: 1, concurrency: 1}); err == nil {
		t.Error("a missing config did not fail")
	}
	err := run(ctx, &out, options{configFile: "../../../../examples/thrift/proxy.yaml", calls: 1, concurrency: 1})
	if err == nil || !strings.Contains(err.Error(), `uses codec "thrift"`) {
		t.Errorf("a Thrift config: %v", err)
	}
}
