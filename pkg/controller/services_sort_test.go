package controller

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCompareKeys: compareKeys orders as the keys' strings do, where a
// namespace starts another too.
func TestCompareKeys(t *testing.T) {
	names := []string{"", "a", "a-b", "a/b", "ab", "a.b", "b", "a0", "a/"}
	for _, an := range names {
		for _, bn := range names {
			for _, a := range []string{"x", "-x", "/x", "b"} {
				for _, b := range []string{"x", "-x", "/x", "b"} {
					oa := &metav1.ObjectMeta{Namespace: an, Name: a}
					ob := &metav1.ObjectMeta{Namespace: bn, Name: b}
					want := strings.Compare(key(oa), key(ob))
					if got := compareKeys(oa, ob); got != want {
						t.Errorf("compareKeys(%q, %q) = %d, want %d", key(oa), key(ob), got, want)
					}
				}
			}
		}
	}
}
