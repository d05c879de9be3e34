package queue

import "testing"

func TestQueueKeepsOrderAcrossWrapAndGrowth(t *testing.T) {
	var q Queue[int]
	next, want := 0, 0
	// Push more than pop for a while, then drain, crossing the ring's end
	// and growing it several times.
	for round := range 50 {
		for range round % 7 {
			q.Push(next)
			next++
		}
		for range round % 5 {
			if q.Len() == 0 {
				break
			}
			if got := q.Pop(); got != want {
				t.Fatalf("popped %d, want %d", got, want)
			}
			want++
		}
		for i := range q.Len() {
			if got := *q.At(i); got != want+i {
				t.Fatalf("At(%d) = %d, want %d", i, got, want+i)
			}
		}
	}
	for q.Len() > 0 {
		if got := q.Pop(); got != want {
			t.Fatalf("popped %d, want %d", got, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d items, pushed %d", want, next)
	}
}

func TestSteadyQueueStopsAllocating(t *testing.T) {
	var q Queue[*int]
	v := new(int)
	allocs := testing.AllocsPerRun(1000, func() {
		for range 16 {
			q.Push(v)
		}
		for range 16 {
			q.Pop()
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round once warm, want 0", allocs)
	}
}
