// Package control is the tRPC protocol's part of the controller: ports
// named for trpc get the trpc codec. It reads no kinds of its own: routes
// come from MetaRouters and policies from Istio's and Rosetta's generic
// kinds, as for any protocol.
//
// A controller binary serves tRPC by importing this package, as a proxy
// binary imports the codec.
package control

import (
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/protocols/trpc"
)

func init() {
	controller.Register(controller.TranslatorInfo{Protocol: trpc.Name, New: newTranslator})
}

// translator has nothing to translate beyond the generic kinds.
type translator struct{}

func newTranslator() controller.Translator { return translator{} }

// Build implements controller.Translator.
func (translator) Build(*controller.Index, *controller.Inputs) controller.Part { return part{} }

// part is an empty share of a push.
type part struct{}

// Statuses implements controller.Part: none.
func (part) Statuses() map[string]controller.RouterStatus { return nil }
