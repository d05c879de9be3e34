package xds

import "testing"

// TestResponseBuffersFitTheResponse checks that a response over 16 KiB
// (up to 1 MiB, the largest gRPC pools) is held in at most twice its
// size, where
// gRPC's default pool gives everything over 32 KiB a 1 MiB buffer.
func TestResponseBuffersFitTheResponse(t *testing.T) {
	for _, n := range []int{20 << 10, 33 << 10, 40 << 10, 100 << 10, 300 << 10, 600 << 10, 1 << 20} {
		b := responseBuffers.Get(n)
		if len(*b) != n || cap(*b) > 2*n {
			t.Errorf("a %d-byte response: a buffer of length %d and capacity %d, want at most %d", n, len(*b), cap(*b), 2*n)
		}
		responseBuffers.Put(b)
	}
}
