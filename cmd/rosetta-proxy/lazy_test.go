package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	xdsclient "github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// --lazy needs the controller over delta xDS and a positive idle time;
// with them it gives the xDS client the destinations to report.
func TestLazyFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := proxy.New(slog.Default())
	for _, c := range []struct {
		xo   xdsclient.Options
		idle time.Duration
		want string
	}{
		{xdsclient.Options{}, time.Minute, "--lazy needs --xds"},
		{xdsclient.Options{Address: "c:1"}, time.Minute, "--xds-mode=delta"},
		{xdsclient.Options{Address: "c:1", Delta: true}, 0, "--lazy-idle"},
	} {
		o := lazyOptions{on: true, idle: c.idle}
		if err := o.start(ctx, p, &c.xo); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v, idle %v: %v, want an error naming %s", c.xo, c.idle, err, c.want)
		}
	}
	xo := xdsclient.Options{Address: "c:1", Delta: true}
	if err := (&lazyOptions{}).start(ctx, p, &xo); err != nil || xo.Lazy != nil {
		t.Errorf("without --lazy: %v, lazy %v", err, xo.Lazy)
	}
	if err := (&lazyOptions{on: true, idle: time.Minute}).start(ctx, p, &xo); err != nil || xo.Lazy == nil {
		t.Errorf("--lazy: %v, lazy %v", err, xo.Lazy)
	}
}
