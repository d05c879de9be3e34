// Command chaosprovider is a dubbo-go provider (dubbokit's Greeter) in a
// process of its own, so that TestChaos can kill it with SIGKILL as a
// crashing pod would be: the kernel, not the provider, closes its
// connections. It serves until killed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
)

func main() {
	name := flag.String("name", "v1", "the prefix of every answer")
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	version := flag.String("version", "1.0.0", "the service version served")
	flag.Parse()
	p, err := dubbokit.NewProvider(dubbokit.ProviderConfig{Name: *name, Version: *version, Addr: *addr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosprovider:", err)
		os.Exit(1)
	}
	fmt.Println("serving", p.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	p.Kill()
}
