// Command trpcload runs Rosetta's load harness (package bench/load) for
// tRPC: a real trpc-go server whose Echo function returns its bytes, and real
// trpc-go clients, each one multiplexed connection with many calls in
// flight, direct and through rosetta-proxy (and haproxy when installed). The
// proxy routes on the attribute func.
//
// It lives in the e2e/trpc module because trpc-go is heavy. From e2e/trpc:
//
//	go run ./cmd/trpcload -proxy ../../bin/rosetta-proxy
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rosetta-mesh/rosetta/bench/load"
	"github.com/rosetta-mesh/rosetta/e2e/trpc/cmd/internal/greeter"
)

func main() {
	var o load.Options
	o.RegisterFlags(flag.CommandLine)
	flag.Parse()
	greeter.Quiet()
	if err := load.Run(driver{}, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "trpcload:", err)
		os.Exit(1)
	}
}

// driver is tRPC's load.Driver.
type driver struct{}

func (driver) Name() string                       { return "tRPC (trpc-go)" }
func (driver) Codec() (string, map[string]string) { return "trpc", nil }
func (driver) Match() (string, string)            { return "func", greeter.Echo }

func (driver) Serve() (string, func(), error) {
	s, err := greeter.Serve("127.0.0.1:0", "echo")
	if err != nil {
		return "", nil, err
	}
	return s.Addr(), s.Close, nil
}

func (driver) Dial(addr string, payload int) (load.Client, error) {
	c := &client{c: greeter.Dial(addr), payload: bytes.Repeat([]byte{'x'}, payload)}
	// trpc-go connects on the first call: make it here, so a target that
	// refuses fails the dial as with the other drivers.
	if err := c.Call(); err != nil {
		return nil, err
	}
	return c, nil
}

// client is one trpc-go client with its own multiplexed connection.
type client struct {
	c       *greeter.Client
	payload []byte
}

func (c *client) Call() error {
	got, err := c.c.Echo(context.Background(), c.payload)
	if err != nil {
		return err
	}
	if len(got) != len(c.payload) {
		return fmt.Errorf("trpcload: echoed %d bytes, sent %d", len(got), len(c.payload))
	}
	return nil
}

// Close does nothing: trpc-go's multiplexed pool has no way to close its
// connection, which stays open, idle, until the process exits.
func (c *client) Close() error { return nil }
