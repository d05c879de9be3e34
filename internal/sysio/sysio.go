// Package sysio reads and writes non-blocking sockets, and asks epoll what
// is ready without waiting, with the least runtime work: a system call that
// cannot block need not tell the scheduler it is leaving. entersyscall and
// exitsyscall cost about as much as the proxy's own work on a small
// request, and a thread seen inside a system call keeps Go's sysmon waking
// every 20 µs to see whether to take its P away.
package sysio

// rawLimit bounds the bytes a raw call moves: copying more takes long enough
// that the scheduler and the collector should see the thread as in a system
// call, as syscall.Read and syscall.Write report it.
const rawLimit = 64 << 10
