// Command rosetta-proxy is Rosetta's data plane. It runs from a static config
// file (--config) or from the controller over xDS (--xds).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard"
)

type options struct {
	configFile string
	admin      string
	drain      time.Duration
	logLevel   string
}

func main() {
	var o options
	flag.StringVar(&o.configFile, "config", "", "static config file (listeners, routes, clusters, endpoints)")
	flag.StringVar(&o.admin, "admin", "", "admin address for /ready, /metrics and /config_dump (overrides the config's admin.address; default 127.0.0.1:15000)")
	flag.DurationVar(&o.drain, "drain-timeout", 20*time.Second, "how long requests in flight may take to finish on shutdown")
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "rosetta-proxy:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	if o.configFile == "" {
		return errors.New("--config is required")
	}
	boot, err := config.LoadFile(o.configFile)
	if err != nil {
		return err
	}
	p := proxy.New(log)
	if err := p.Apply(boot.Resources); err != nil {
		return err
	}
	admin := firstNonEmpty(o.admin, boot.Admin.Address, "127.0.0.1:15000")
	ln, err := net.Listen("tcp", admin)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	go func() { _ = p.ServeAdmin(ln) }()
	log.Info("rosetta-proxy started", "config", o.configFile, "admin", ln.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("draining", "timeout", o.drain)
	dctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	_ = p.Shutdown(dctx)
	return ln.Close()
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
