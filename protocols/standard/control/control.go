// Package control registers the controller's part of every protocol that
// ships with Rosetta, as protocols/standard registers their codecs: a
// controller binary imports it for the standard build; a custom build
// imports the control packages it wants instead (and its own).
package control

import (
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo/control"  // registers "dubbo"
	_ "github.com/rosetta-mesh/rosetta/protocols/redis/control"  // registers "redis"
	_ "github.com/rosetta-mesh/rosetta/protocols/thrift/control" // registers "thrift"
	_ "github.com/rosetta-mesh/rosetta/protocols/trpc/control"   // registers "trpc"
)
