package hbone

import (
	"net/http"
	"net/netip"
	"testing"
)

// The client a stream tunnels for is the for= of the first Forwarded
// element, in the forms RFC 7239 allows; anything else names none.
func TestForwardedAddr(t *testing.T) {
	for v, want := range map[string]string{
		"for=10.1.2.3":                         "10.1.2.3",
		`for="10.1.2.3:4711"`:                  "10.1.2.3",
		`For="[2001:db8::17]"`:                 "2001:db8::17",
		`for="[2001:db8::17]:4711";proto=http`: "2001:db8::17",
		"proto=http; for=10.1.2.3;by=10.0.0.1": "10.1.2.3",
		"for=10.1.2.3, for=10.9.9.9":           "10.1.2.3",
		"for=::ffff:10.1.2.3":                  "10.1.2.3",
		"for=unknown":                          "",
		"for=_hidden":                          "",
		"for=fe80::1%eth0":                     "",
		"by=10.0.0.1":                          "",
		"":                                     "",
		"for=10.1.2.3.4":                       "",
		"proto=http, for=10.1.2.3":             "",
		`for="[2001:db8::17`:                   "",
	} {
		got := forwardedAddr(v)
		if got.IsValid() != (want != "") || got.IsValid() && got.String() != want {
			t.Errorf("forwardedAddr(%q) = %v, want %q", v, got, want)
		}
	}
}

// A CONNECT's Forwarded header reaches the stream and the open request;
// one without names no client.
func TestStreamKnowsTheClientItTunnelsFor(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	for _, client := range []netip.Addr{netip.MustParseAddr("10.244.0.7"), netip.MustParseAddr("fd00::7"), {}} {
		tn, status, err := cc.ConnectFor(dest, client)
		if err != nil || status != http.StatusOK {
			t.Fatalf("CONNECT for %v: %d, %v", client, status, err)
		}
		t.Cleanup(func() { tn.Close() })
		s := ts.next(t)
		if r := <-ts.requests; s.Source() != client || r.Source != client {
			t.Errorf("client %v: the stream names %v, the request %v", client, s.Source(), r.Source)
		}
	}
}
