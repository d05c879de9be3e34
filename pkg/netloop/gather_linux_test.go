//go:build linux

package netloop

import (
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// holding returns a batch that holds a write for an upstream writer, in
// order (Awaiting set) or not.
func holding(t *testing.T, inOrder bool) *wire.Batch {
	t.Helper()
	conn, _ := testutil.TCPPair(t)
	o := wire.Options{Timeout: time.Second, Max: 1 << 20, Server: true}
	if inOrder {
		o.Awaiting = func() bool { return false }
	}
	w := wire.NewWriter(conn, o)
	t.Cleanup(w.Close)
	b := &wire.Batch{}
	b.Open()
	w.Lock()
	w.AppendLocked([]byte("request\n"))
	w.HoldLocked(b)
	w.Unlock()
	return b
}

// TestGatherWaitsOnlyForManyClientsOnAFreeCPU: the loop polls for owed
// requests only with gatherClients or more owing, a recent request, a
// write held for an in-order server and a CPU nobody else wanted; a wait
// that gives up forgets the count.
func TestGatherWaitsOnlyForManyClientsOnAFreeCPU(t *testing.T) {
	inOrder, byID := holding(t, true), holding(t, false)
	for _, c := range []struct {
		name     string
		owed     int
		since    time.Duration
		busy     bool
		b        *wire.Batch
		wait     bool
		owedNext int
	}{
		{"many owing", gatherClients, 0, false, inOrder, true, gatherClients},
		{"few owing", gatherClients - 1, 0, false, inOrder, false, gatherClients - 1},
		{"CPU shared", gatherClients, 0, true, inOrder, false, gatherClients},
		{"server answers by id", gatherClients, 0, false, byID, false, gatherClients},
		{"no request lately", gatherClients, 2 * gatherGap, false, inOrder, false, 0},
	} {
		g := gather{owed: c.owed, lastReq: time.Now().Add(-c.since), busy: c.busy}
		// A sample far ahead keeps busy as set: no kernel look in this test.
		g.sampled = time.Now().Add(time.Hour)
		if got := g.wait(c.b); got != c.wait || g.owed != c.owedNext {
			t.Errorf("%s: wait = %v (owed %d), want %v (owed %d)", c.name, got, g.owed, c.wait, c.owedNext)
		}
	}
}

func TestGatherCountsAnswersAgainstRequests(t *testing.T) {
	defer func(off bool) { gatherOff.Store(off) }(gatherOff.Load())
	gatherOff.Store(true) // --gather=false: nothing counted, so no gathering
	var g gather
	g.answered(gatherClients)
	if g.owed != 0 || g.rounds() != maxRounds {
		t.Fatalf("with gathering off: owed %d, rounds %d; want 0, %d", g.owed, g.rounds(), maxRounds)
	}
	gatherOff.Store(false)
	g.answered(3)
	now := time.Now()
	for range 4 {
		g.request(now)
	}
	if g.owed != 0 || !g.lastReq.Equal(now) {
		t.Fatalf("owed %d after 3 answers and 4 requests, last request %v; want 0, %v", g.owed, g.lastReq, now)
	}
	g.answered(gatherClients)
	if g.rounds() != gatherRounds {
		t.Fatalf("rounds while gathering = %d, want %d", g.rounds(), gatherRounds)
	}
	g.busy = true
	if g.rounds() != maxRounds {
		t.Fatalf("rounds on a shared CPU = %d, want %d", g.rounds(), maxRounds)
	}
}

// TestGatherSamplesItsThread: the first sample on a thread only records it;
// the kernel answers for this one.
func TestGatherSamplesItsThread(t *testing.T) {
	g := gather{busy: true}
	g.cpuShared(time.Now())
	if g.tid == 0 || !g.busy {
		t.Fatalf("first sample: tid %d, busy %v; want a thread and busy kept", g.tid, g.busy)
	}
}

// TestLoopWritesWhatItGathersForOnceRequestsStop: a loop whose clients owe
// many requests, on a CPU of its own, polls for them, and still writes the
// one request it holds when they never come.
func TestLoopWritesWhatItGathersForOnceRequestsStop(t *testing.T) {
	lp, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	// Before the loop runs, so it owns these from the start: many clients
	// owe, and the CPU counts as free with no look at the kernel.
	lp.gather.owed = 4 * gatherClients
	lp.gather.sampled = time.Now().Add(time.Hour)
	go lp.run()
	upConn, upPeer := testutil.TCPPair(t)
	// Redis owes nothing.
	up := wire.NewWriter(upConn, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20, Server: true, Awaiting: func() bool { return false }})
	defer up.Close()
	client, server := testutil.TCPPair(t)
	w := wire.NewWriter(server, wire.Options{Timeout: 5 * time.Second, Max: 1 << 20})
	defer w.Close()
	if !lp.add(server, testutil.Lines{}, w, &forward{up: up}, Limits{}) {
		t.Fatal("the loop refused a TCP connection")
	}
	forwards(t, client, upPeer, "a gathered write never went out")
}
