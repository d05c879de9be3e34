package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// Bytes is a flag of bytes: a number with an optional Ki, Mi or Gi, as
// Kubernetes writes memory quantities.
type Bytes int64

func (b *Bytes) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Type names the flag's kind in --help.
func (b *Bytes) Type() string { return "bytes" }

func (b *Bytes) Set(s string) error {
	n, err := ParseBytes(s)
	*b = Bytes(n)
	return err
}

// ParseBytes reads a number of bytes with an optional Ki, Mi or Gi.
func ParseBytes(in string) (int64, error) {
	s, shift := in, uint(0)
	for suffix, sh := range map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30} {
		if strings.HasSuffix(s, suffix) {
			s, shift = strings.TrimSuffix(s, suffix), sh
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a number of bytes (such as 134217728 or 128Mi)", in)
	}
	return n << shift, nil
}
