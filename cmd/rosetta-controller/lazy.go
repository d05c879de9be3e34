package main

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation"
)

// checkLazyFallback refuses a --lazy-fallback that is neither an IP nor a
// DNS name: lazy proxies would dial it at every destination's port.
func checkLazyFallback(s string) error {
	if s == "" {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
		return fmt.Errorf("%q is neither an IP address nor a DNS name (the port is the destination's): %s", s, errs[0])
	}
	return nil
}
