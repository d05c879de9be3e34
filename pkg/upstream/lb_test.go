package upstream

import (
	"fmt"
	"testing"
)

func endpoints(n int) []*Endpoint {
	var eps []*Endpoint
	for i := 0; i < n; i++ {
		eps = append(eps, newEndpoint(fmt.Sprintf("10.0.0.%d:1", i)))
	}
	return eps
}

func TestBalancers(t *testing.T) {
	eps := endpoints(3)
	eps[1].fail() // ejected
	for _, p := range []LBPolicy{RoundRobin, LeastRequest, Random, ConsistentHash} {
		b, err := newBalancer(p, eps, 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for i := 0; i < 300; i++ {
			seen[b.Pick(eps, HashString(fmt.Sprint(i)), nil).Addr]++
		}
		if seen[eps[1].Addr] != 0 {
			t.Errorf("%s picked the ejected endpoint %d times", p, seen[eps[1].Addr])
		}
		if seen[eps[0].Addr] == 0 || seen[eps[2].Addr] == 0 {
			t.Errorf("%s did not spread over the healthy endpoints: %v", p, seen)
		}
		if got := b.Pick(eps, 7, eps[0]); got == eps[0] {
			t.Errorf("%s picked the excluded endpoint with another one healthy", p)
		}
	}
}

func TestLeastRequestPrefersTheIdle(t *testing.T) {
	eps := endpoints(2)
	for i := 0; i < 50; i++ {
		eps[0].Begin()
	}
	b := leastRequest{}
	busy := 0
	for i := 0; i < 200; i++ {
		if b.Pick(eps, 0, nil) == eps[0] {
			busy++
		}
	}
	// P2C picks the busy one only when both draws hit it: about a quarter.
	if busy > 80 {
		t.Fatalf("the busy endpoint got %d of 200 picks", busy)
	}
}

func TestAllEjectedStillPicks(t *testing.T) {
	eps := endpoints(2)
	eps[0].fail()
	eps[1].fail()
	if (&roundRobin{}).Pick(eps, 0, nil) == nil {
		t.Fatal("with every endpoint ejected, nothing was picked")
	}
	one := endpoints(1)
	if (&roundRobin{}).Pick(one, 0, one[0]) != one[0] {
		t.Fatal("a retry with one endpoint must go to it again")
	}
}

func TestRingKeepsKeysWhenAnEndpointGoes(t *testing.T) {
	eps := endpoints(4)
	before := newRingHash(eps, 0)
	after := newRingHash(eps[:3], 0)
	moved := 0
	for i := 0; i < 1000; i++ {
		h := HashString(fmt.Sprint("key", i))
		a, b := before.Pick(nil, h, nil), after.Pick(nil, h, nil)
		if a != eps[3] && a != b {
			moved++
		}
	}
	if moved > 0 {
		t.Fatalf("%d keys moved between endpoints that stayed", moved)
	}
}

func TestRingSizeFromConfig(t *testing.T) {
	eps := endpoints(3)
	if n := len(newRingHash(eps, 3000).points); n < 3000 {
		t.Fatalf("a ring of minimum size 3000 has %d points", n)
	}
	if n := len(newRingHash(eps, 0).points); n != 3*vnodes {
		t.Fatalf("the default ring has %d points", n)
	}
}
