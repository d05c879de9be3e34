//go:build !linux

package netloop

import (
	"net"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Serve declines: the event loops are Linux's (loop_linux.go).
func Serve(net.Conn, codec.Codec, *wire.Writer, Handler, time.Duration) bool { return false }

// ServeOn declines, as Serve does.
func ServeOn(*wire.Batch, net.Conn, codec.Codec, *wire.Writer, Handler, time.Duration) bool {
	return false
}
