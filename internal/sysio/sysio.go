// Package sysio reads and writes non-blocking sockets with the least
// runtime work: a system call that cannot block need not tell the scheduler
// it is leaving (entersyscall and exitsyscall cost about as much as the
// proxy's own work on a small request).
package sysio

// rawLimit bounds the bytes a raw call moves: copying more takes long enough
// that the scheduler and the collector should see the thread as in a system
// call, as syscall.Read and syscall.Write report it.
const rawLimit = 64 << 10
