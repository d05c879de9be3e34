// Package auto holds proxy.yaml, a ready static config of a listener whose
// codec is "auto": Dubbo, tRPC and Thrift callers on one port.
package auto
