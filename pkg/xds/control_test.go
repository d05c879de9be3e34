package xds_test

// The controller in these tests knows the protocols that ship with
// Rosetta, as rosetta-controller does.
import _ "github.com/rosetta-mesh/rosetta/protocols/standard/control"
