// Package auto holds proxy.yaml, a ready static config of a listener whose
// codec is "auto": Dubbo, tRPC, Redis and Thrift callers on one port.
package auto
