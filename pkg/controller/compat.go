package controller

// Transitional, until cmd/rosettactl and pkg/xds's tests (owned elsewhere)
// import protocols/standard/control as cmd/rosetta-controller does: delete
// this file then (issue 26).

// transitionalProtocols are protocol names known, with their codec of the
// same name and MetaRouter routes only, in a binary that links no
// translator for them.
var transitionalProtocols = []string{"dubbo", "redis", "thrift", "trpc"}

// RedisStatuses is ProtocolStatuses under its former name, for
// cmd/rosettactl; new code calls ProtocolStatuses. (Not marked Deprecated,
// so that staticcheck stays clean until rosettactl moves.)
func (ix *Index) RedisStatuses() map[string]RouterStatus { return ix.ProtocolStatuses() }
