package dubbokit

import "testing"

func TestOnFreshPortSkipsAddressesServedBefore(t *testing.T) {
	addrs := []string{"fresh-test:1", "fresh-test:1", "fresh-test:2"}
	started := 0
	start := func() (int, string) {
		started++
		return started, addrs[started-1]
	}
	if got := OnFreshPort(t, "first", start); got != 1 {
		t.Fatalf("first server: got start %d, want 1", got)
	}
	if got := OnFreshPort(t, "second", start); got != 3 {
		t.Fatalf("second server: got start %d, want 3 (the second start reused fresh-test:1)", got)
	}
}
