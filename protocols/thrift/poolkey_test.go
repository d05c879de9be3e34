package thrift

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Requests of different transports or encodings get different pool keys, so
// they never share an upstream connection.
func TestPoolKeySeparatesFormats(t *testing.T) {
	keys := map[string]string{}
	for _, combo := range combos {
		frames, _ := loadCaptures(t, combo)
		c, err := New(codec.Options{}, codec.PeerClient)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Decode(frames[0])
		if err != nil {
			t.Fatal(err)
		}
		k := c.(codec.PoolKeyer).PoolKey(m)
		if k == "" {
			t.Fatalf("%s: empty pool key", combo.name)
		}
		if other, dup := keys[k]; dup {
			t.Fatalf("%s and %s share the pool key %q", combo.name, other, k)
		}
		keys[k] = combo.name
	}
}
