// Package standard registers every codec that ships with Rosetta. A proxy
// binary imports it for the standard build; a custom build imports the codec
// packages it wants instead (and its own).
package standard

import (
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo"  // registers "dubbo"
	_ "github.com/rosetta-mesh/rosetta/protocols/redis"  // registers "redis"
	_ "github.com/rosetta-mesh/rosetta/protocols/thrift" // registers "thrift"
	_ "github.com/rosetta-mesh/rosetta/protocols/trpc"   // registers "trpc"
)
