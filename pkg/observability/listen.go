package observability

import (
	"fmt"
	"net"
)

// ListenDebug listens on addr for endpoints that reveal configuration or
// let a caller spend CPU: config dumps and pprof. Unless exposed, addr
// must be a loopback address, because these endpoints are for someone on
// the machine or in the pod (kubectl port-forward), not for the network;
// an empty host or 0.0.0.0 would put them on every interface.
func ListenDebug(addr string, exposed bool) (net.Listener, error) {
	if !exposed && !IsLoopback(addr) {
		return nil, fmt.Errorf("observability: %q is not a loopback address, and config dumps and pprof are served on loopback only unless exposed", addr)
	}
	return net.Listen("tcp", addr)
}

// IsLoopback reports whether host:port names a loopback host.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
