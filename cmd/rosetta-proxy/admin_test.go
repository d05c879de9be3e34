package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/spf13/pflag"
)

func parseAdmin(t *testing.T, args ...string) *adminOptions {
	t.Helper()
	var a adminOptions
	fs := pflag.NewFlagSet("rosetta-proxy", pflag.ContinueOnError)
	a.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &a
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminOnLoopbackMetricsApart: without flags the admin listens on
// loopback; /config_dump and pprof are served there and not on the
// metrics address, which serves /metrics and /ready.
func TestAdminOnLoopbackMetricsApart(t *testing.T) {
	if addr := parseAdmin(t).address(""); !observability.IsLoopback(addr) {
		t.Fatalf("the default admin address %s is not loopback", addr)
	}
	// The default's host with free ports, so tests can run side by side.
	host, _, _ := net.SplitHostPort(defaultAdmin)
	free := net.JoinHostPort(host, "0")
	lns, err := parseAdmin(t, "--admin="+free, "--metrics-address="+free).listen("")
	if err != nil {
		t.Fatal(err)
	}
	defer lns.close()
	lns.serve(proxy.New(slog.New(slog.NewTextHandler(io.Discard, nil))))
	admin, metrics := "http://"+lns.admin.Addr().String(), "http://"+lns.metricsAddr()
	if ip := lns.admin.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Fatalf("admin bound to %s", ip)
	}
	for _, c := range []struct {
		url  string
		want int
	}{
		{admin + "/config_dump", http.StatusOK},
		{admin + "/debug/pprof/", http.StatusOK},
		{admin + "/metrics", http.StatusOK},
		{metrics + "/metrics", http.StatusOK},
		// No config yet: not ready, but answered.
		{metrics + "/ready", http.StatusServiceUnavailable},
		{metrics + "/config_dump", http.StatusNotFound},
		{metrics + "/debug/pprof/", http.StatusNotFound},
		{metrics + "/debug/pprof/profile?seconds=1", http.StatusNotFound},
	} {
		if got := status(t, c.url); got != c.want {
			t.Errorf("GET %s = %d, want %d", c.url, got, c.want)
		}
	}
}

// TestAdminExposedOnlyOnRequest: an admin address on every interface,
// from the flag or the static config, is refused unless --expose-admin.
func TestAdminExposedOnlyOnRequest(t *testing.T) {
	for _, c := range []struct {
		args     []string
		bootAddr string
	}{
		{[]string{"--admin=:0"}, ""},
		{[]string{"--admin=0.0.0.0:0"}, ""},
		{nil, "0.0.0.0:0"},
	} {
		_, err := parseAdmin(t, c.args...).listen(c.bootAddr)
		if err == nil || !strings.Contains(err.Error(), "--expose-admin") {
			t.Errorf("%v, config %q: %v, want a refusal naming --expose-admin", c.args, c.bootAddr, err)
		}
	}
	lns, err := parseAdmin(t, "--admin=:0", "--expose-admin").listen("")
	if err != nil {
		t.Fatal(err)
	}
	lns.close()
}
