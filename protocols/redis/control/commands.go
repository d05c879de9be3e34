package control

import (
	"strings"

	"github.com/rosetta-mesh/rosetta/protocols/redis"
)

// readCommands are the commands a mirror with excludeReadCommands skips:
// those the codec's command table marks read-only (including PUBLISH,
// which a mirror must not send twice).
var readCommands = redis.ReadCommands()

var readSet = func() map[string]bool {
	m := make(map[string]bool, len(readCommands))
	for _, c := range readCommands {
		m[c] = true
	}
	return m
}()

// commandRegex matches any of the (upper-case) command names; the
// names are letters, digits, '_' and '-' (checked by Validate), so they
// need no escaping.
func commandRegex(cmds []string) string {
	return strings.Join(cmds, "|")
}
