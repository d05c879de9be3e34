package cli

import "testing"

func TestBytesReadsKubernetesQuantities(t *testing.T) {
	for in, want := range map[string]int64{"134217728": 128 << 20, "128Mi": 128 << 20, "1Gi": 1 << 30, "16Ki": 16 << 10, "0": 0} {
		var b Bytes
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1", "1.5Gi", "1G", "99999999999Gi"} {
		var b Bytes
		if err := b.Set(bad); err == nil {
			t.Errorf("%q was accepted as %d", bad, b)
		}
	}
	for n, want := range map[int64]string{1 << 30: "1Gi", 900 << 20: "900Mi", 1000: "1000", 0: "0"} {
		b := Bytes(n)
		if got := b.String(); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}
