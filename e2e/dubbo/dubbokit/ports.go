package dubbokit

import (
	"sync"
	"testing"
)

// served holds every address a server in this process (a provider, a
// proxy) has listened on. dubbo-go keeps one exchange client per
// "host:port" for the whole process, and drops it only when a reference is
// destroyed, which its client API cannot do. A consumer of a new server on
// an earlier server's port would get that server's closed session
// ("session Already Closed"), so tests give each server a port of its own.
var served sync.Map

// maxPortTries bounds the servers a test starts to get an unused port.
const maxPortTries = 10

// OnFreshPort calls start, which starts a server (what, for messages) that
// the test stops when it ends and returns it with its address, until the
// address is one no server of this process had before. A server on a used
// port stays up until then: it keeps that port taken.
func OnFreshPort[S any](t testing.TB, what string, start func() (S, string)) S {
	t.Helper()
	for range maxPortTries {
		s, addr := start()
		if _, seen := served.LoadOrStore(addr, true); !seen {
			return s
		}
	}
	t.Fatalf("dubbokit: %s: %d ports in a row were used before in this process", what, maxPortTries)
	var none S
	return none
}
