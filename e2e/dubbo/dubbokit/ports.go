package dubbokit

import "sync"

// served holds every address a server in this process (a provider, a
// proxy) has listened on. dubbo-go keeps one exchange client per
// "host:port" for the whole process, and drops it only when a reference is
// destroyed, which its client API cannot do. A consumer of a new server on
// an earlier server's port would get that server's closed session
// ("session Already Closed"), so tests give each server a port of its own.
var served sync.Map

// maxPortTries bounds the servers a test starts to get an unused port.
const maxPortTries = 10

// FirstUse records addr as a server's and reports whether no server of this
// process had it before.
func FirstUse(addr string) bool {
	_, seen := served.LoadOrStore(addr, true)
	return !seen
}
