// Package redis holds the Redis example config (proxy.yaml).
package redis
