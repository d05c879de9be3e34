//go:build !linux

package netloop

import (
	"crypto/tls"
	"net"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// serveOnLoop declines: the event loops are Linux's (loop_linux.go).
func serveOnLoop(*Round, net.Conn, codec.Codec, *wire.Writer, Handler, Limits) bool {
	return false
}

// TLSServer is tls.Server: there are no loops to read it.
func TLSServer(nc net.Conn, config *tls.Config) *tls.Conn { return tls.Server(nc, config) }

// TLSClient is tls.Client: there are no loops to read it.
func TLSClient(nc net.Conn, config *tls.Config) *tls.Conn { return tls.Client(nc, config) }
