// Package control is the toy protocol's part of the controller, written as
// the example of a protocol that brings its own kind: nothing outside this
// folder knows it. A ToyRoute sends the calls of one method of a toy
// service to one subset:
//
//	apiVersion: toy.example.dev/v1alpha1
//	kind: ToyRoute
//	metadata: {name: hello-v2, namespace: demo}
//	spec: {host: greeter, method: hello, subset: v2}
//
// Ports named "toy" (or "toy-*", appProtocol toy) of a toy service get the
// toy codec and, for their host, a route per ToyRoute (oldest first) ahead
// of one to the whole service. Importing the package registers it, as
// importing examples/toy registers the codec.
package control

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// RouteKind is the toy protocol's own kind.
const RouteKind = "ToyRoute"

// RouteGVR is where ToyRoutes would be served in Kubernetes.
var RouteGVR = schema.GroupVersionResource{Group: "toy.example.dev", Version: "v1alpha1", Resource: "toyroutes"}

// attrMethod is the toy codec's header that names the method.
const attrMethod = "method"

func init() {
	controller.Register(controller.TranslatorInfo{
		Protocol: toy.Name,
		Kinds: []controller.Kind{{
			Kind: RouteKind, GVR: RouteGVR,
			New:    func() metav1.Object { return &Route{} },
			Status: func(o metav1.Object) v1alpha1.MetaRouterStatus { return o.(*Route).Status },
		}},
		New: func() controller.Translator { return &translator{last: map[string]*Route{}} },
	})
}

// Route is a ToyRoute.
type Route struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RouteSpec                 `json:"spec"`
	Status            v1alpha1.MetaRouterStatus `json:"status,omitempty"`
}

// RouteSpec says where calls of a method go.
type RouteSpec struct {
	// Host is the toy service (a short name is relative to the route's
	// namespace).
	Host string `json:"host"`
	// Method is the value of the method header the route matches.
	Method string `json:"method"`
	// Subset of the host's DestinationRule the calls go to; the whole
	// service when empty.
	Subset string `json:"subset,omitempty"`
}

// Validate checks the fields a route needs.
func (r *Route) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if r.Spec.Host == "" {
		errs = append(errs, field.Required(spec.Child("host"), "the toy service"))
	}
	if r.Spec.Method == "" {
		errs = append(errs, field.Required(spec.Child("method"), "the method to match"))
	}
	return errs
}

// translator remembers each ToyRoute's last valid version.
type translator struct {
	last map[string]*Route
}

// part is one push's ToyRoutes, by host.
type part struct {
	routes   map[string][]*Route
	statuses map[string]controller.RouterStatus
}

// Build indexes the ToyRoutes in force by qualified host.
func (t *translator) Build(ix *controller.Index, in *controller.Inputs) controller.Part {
	p := &part{routes: map[string][]*Route{}, statuses: map[string]controller.RouterStatus{}}
	for _, r := range controller.InForce(controller.ObjectsOf[Route](in, RouteKind), t.last, p.statuses, RouteKind+"/") {
		host := ix.Qualify(r.Spec.Host, r.Namespace)
		p.routes[host] = append(p.routes[host], r)
		k := RouteKind + "/" + controller.Key(r)
		if _, invalid := p.statuses[k]; invalid {
			continue
		}
		refs := controller.Condition(v1alpha1.ConditionResolvedRefs, true, v1alpha1.ReasonResolved, "the host exists", r.Generation)
		if ix.Service(host) == nil {
			refs = controller.Condition(v1alpha1.ConditionResolvedRefs, false, v1alpha1.ReasonUnknownHost, fmt.Sprintf("spec.host: no toy service %s", host), r.Generation)
		}
		p.statuses[k] = controller.RouterStatus{Generation: r.Generation, Conditions: []metav1.Condition{
			controller.Condition(v1alpha1.ConditionAccepted, true, v1alpha1.ReasonAccepted, "in force", r.Generation), refs}}
	}
	return p
}

// Statuses implements controller.Part.
func (p *part) Statuses() map[string]controller.RouterStatus { return p.statuses }

// Routes implements controller.Router: a route per ToyRoute of the host,
// then one to the whole service; none (the MetaRouter's, or the default)
// for a host without ToyRoutes.
func (p *part) Routes(g *controller.Generation, svc *controller.Service, port controller.Port) []*configv1alpha1.Route {
	routes := p.routes[svc.Host]
	if len(routes) == 0 {
		return nil
	}
	var out []*configv1alpha1.Route
	for _, r := range routes {
		out = append(out, &configv1alpha1.Route{
			Name: RouteKind + "/" + controller.Key(r),
			Match: &configv1alpha1.RouteMatch{Attributes: []*configv1alpha1.AttributeMatch{
				{Name: attrMethod, Match: &configv1alpha1.AttributeMatch_Exact{Exact: r.Spec.Method}},
			}},
			Route: cluster(g.Cluster(svc.Host, port.Number, r.Spec.Subset)),
		})
	}
	return append(out, &configv1alpha1.Route{Name: "default", Match: &configv1alpha1.RouteMatch{}, Route: cluster(g.Cluster(svc.Host, port.Number, ""))})
}

func cluster(name string) *configv1alpha1.RouteAction {
	return &configv1alpha1.RouteAction{ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: name}}
}

// Interface guards.
var (
	_ controller.Part   = (*part)(nil)
	_ controller.Router = (*part)(nil)
)
