package load

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"testing"
)

// An HBONE row's clients share one HTTP/2 connection, kept open until the
// row ends, or each has its own, closed with it; a refused stream's own
// connection is closed at once.
func TestHBONEClients(t *testing.T) {
	for _, tc := range []struct {
		name           string
		shared         bool
		dials          int32 // for 3 clients
		closedByClient int32 // once the 3 clients are closed
	}{
		{name: "shared", shared: true, dials: 1, closedByClient: 0},
		{name: "a connection per stream", shared: false, dials: 3, closedByClient: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f fakeHBONE
			h := &hboneClients{dial: f.dial, addr: "hbone", authority: "10.0.0.1:80", shared: tc.shared}
			var clients []Client
			for range 3 {
				c, err := h.client(pipeDriver{}, 0)
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
			if got := f.dials.Load(); got != tc.dials {
				t.Errorf("%d HTTP/2 connections for 3 clients; want %d", got, tc.dials)
			}
			for _, c := range clients {
				c.Close()
			}
			if got := f.closes.Load(); got != tc.closedByClient {
				t.Errorf("%d HTTP/2 connections closed with the clients; want %d", got, tc.closedByClient)
			}
			h.close()
			if got := f.closes.Load(); got != tc.dials {
				t.Errorf("%d HTTP/2 connections closed when the row ended; want %d", got, tc.dials)
			}

			f.refuse.Store(true)
			if _, err := h.client(pipeDriver{}, 0); err == nil {
				t.Fatal("a refused stream gave a client")
			}
			if d, c := f.dials.Load(), f.closes.Load(); !tc.shared && d != c {
				t.Errorf("a refused stream left its connection open: %d dialled, %d closed", d, c)
			}
			h.close()
		})
	}
}

// fakeHBONE counts the HTTP/2 connections dialled and closed; its streams
// are pipes.
type fakeHBONE struct {
	dials, closes atomic.Int32
	refuse        atomic.Bool
}

func (f *fakeHBONE) dial(string, *tls.Config) (HBONEConn, error) {
	f.dials.Add(1)
	return &fakeConn{f: f}, nil
}

type fakeConn struct {
	f      *fakeHBONE
	closed atomic.Bool
}

func (c *fakeConn) Connect(string) (net.Conn, error) {
	if c.f.refuse.Load() {
		return nil, errors.New("refused")
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func (c *fakeConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.f.closes.Add(1)
	}
	return nil
}

// pipeDriver's clients only own their connection.
type pipeDriver struct{ ConnDriver }

func (pipeDriver) DialConn(nc net.Conn, _ int) (Client, error) { return connClient{nc}, nil }

type connClient struct{ nc net.Conn }

func (c connClient) Call() error  { return nil }
func (c connClient) Close() error { return c.nc.Close() }

// metricValue reads unlabelled series and ignores labelled ones and
// other names sharing the prefix.
func TestMetricValue(t *testing.T) {
	m := "# HELP x\nrosetta_hbone_connections_active_total 7\nrosetta_hbone_connections_active{a=\"b\"} 3\nrosetta_hbone_connections_active 1\n"
	if v, ok := metricValue(m, "rosetta_hbone_connections_active"); !ok || v != 1 {
		t.Errorf("got %v, %v; want 1", v, ok)
	}
	if _, ok := metricValue(m, "rosetta_hbone_streams_accepted_total"); ok {
		t.Error("found a series that is not there")
	}
}
