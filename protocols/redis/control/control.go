// Package control is the Redis protocol's part of the controller: it
// translates RedisServices and RedisDestinations (Rosetta's group or
// Aeraki's) into the routes, codec options, clusters and secrets of Redis
// listeners (see redis.go). The names it shares with the codec (options,
// attributes, read commands) are the codec's, in protocols/redis.
//
// A controller binary serves Redis by importing this package, as a proxy
// binary imports the codec.
package control

import (
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/protocols/redis"
)

func init() {
	controller.Register(controller.TranslatorInfo{
		Protocol:    redis.Name,
		Kinds:       kinds,
		Credentials: &controller.Credentials{Label: CredentialsLabel, ChartValue: "redisCredentials"},
		SecretRefs:  secretRefs,
		New:         newTranslator,
	})
}

// Interface guards.
var (
	_ controller.Part           = (*part)(nil)
	_ controller.CodecOptioner  = (*part)(nil)
	_ controller.Router         = (*part)(nil)
	_ controller.ClusterPatcher = (*part)(nil)
)
