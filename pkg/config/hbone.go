package config

import (
	"fmt"
	"net/netip"
)

// ParseAuthority reads an HBONE destination as a MetaProtocolProxy's
// authorities list it and a CONNECT request's :authority carries it: an IP
// and a port, "10.96.0.12:20880" or "[fd00::12]:20880". The address is
// returned unmapped (an IPv4 address written as IPv6 is the IPv4 one), so
// both spellings name the same destination.
func ParseAuthority(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return netip.AddrPort{}, fmt.Errorf("%q is not an ip:port destination", s)
	case ap.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("%q: the port must not be 0", s)
	case ap.Addr().Zone() != "":
		return netip.AddrPort{}, fmt.Errorf("%q: an address with a zone is not a service destination", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
