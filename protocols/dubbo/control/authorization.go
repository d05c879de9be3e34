package control

import (
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo"
	dubbov1 "github.com/rosetta-mesh/rosetta/protocols/dubbo/api/v1alpha1"
)

// The dubbo codec's attributes a DubboAuthorizationPolicy matches: the
// interface (service path) and the method.
const (
	attrInterface = dubbo.AttrInterface
	attrMethod    = dubbo.AttrMethod
)

// translator remembers the last valid version of every
// DubboAuthorizationPolicy, so that an invalid update leaves the previous
// one in force.
type translator struct {
	last map[string]*dubbov1.DubboAuthorizationPolicy
}

func newTranslator() controller.Translator {
	return &translator{last: map[string]*dubbov1.DubboAuthorizationPolicy{}}
}

// part is the Dubbo translation of one push: the policies in force, by
// namespace and name, and every policy's status.
type part struct {
	policies []controller.CodecPolicy
	statuses map[string]controller.RouterStatus
}

// Build translates the DubboAuthorizationPolicies of in.
func (t *translator) Build(_ *controller.Index, in *controller.Inputs) controller.Part {
	p := &part{statuses: map[string]controller.RouterStatus{}}
	objs := controller.ObjectsOf[dubbov1.DubboAuthorizationPolicy](in, AuthorizationKind)
	inForce := controller.InForce(objs, t.last, p.statuses, AuthorizationKind+"/")
	sort.SliceStable(inForce, func(i, j int) bool { return controller.Key(inForce[i]) < controller.Key(inForce[j]) })
	for _, d := range inForce {
		p.policies = append(p.policies, controller.CodecPolicy{Namespace: d.Namespace, Policy: translate(d)})
		p.accept(d)
	}
	return p
}

// accept records Accepted for a policy in force, unless it is invalid now
// (its status already says so).
func (p *part) accept(d *dubbov1.DubboAuthorizationPolicy) {
	k := AuthorizationKind + "/" + controller.Key(d)
	if _, invalid := p.statuses[k]; invalid {
		return
	}
	p.statuses[k] = controller.RouterStatus{Generation: d.Generation, Conditions: []metav1.Condition{
		controller.Condition(v1alpha1.ConditionAccepted, true, v1alpha1.ReasonAccepted, "in force", d.Generation),
	}}
}

// Statuses implements controller.Part.
func (p *part) Statuses() map[string]controller.RouterStatus { return p.statuses }

// Authorization implements controller.Authorizer.
func (p *part) Authorization() []controller.CodecPolicy { return p.policies }

// translate translates a valid DubboAuthorizationPolicy: interfaces and
// methods are the dubbo codec's interface and method attributes.
func translate(d *dubbov1.DubboAuthorizationPolicy) *configv1alpha1.AuthorizationPolicy {
	out := &configv1alpha1.AuthorizationPolicy{Name: controller.Key(d), Action: controller.AuthorizationAction(d.Spec.Action)}
	for _, r := range d.Spec.Rules {
		rule := &configv1alpha1.AuthorizationRule{}
		for _, f := range r.From {
			s := f.Source
			rule.From = append(rule.From, &configv1alpha1.AuthorizationSource{
				Principals: s.Principals, NotPrincipals: s.NotPrincipals,
				Namespaces: s.Namespaces, NotNamespaces: s.NotNamespaces,
			})
		}
		for _, t := range r.To {
			o := t.Operation
			op := &configv1alpha1.AuthorizationOperation{}
			if len(o.Interfaces)+len(o.NotInterfaces) > 0 {
				op.Attributes = append(op.Attributes, &configv1alpha1.AttributeValues{Name: attrInterface, Values: o.Interfaces, NotValues: o.NotInterfaces})
			}
			if len(o.Methods)+len(o.NotMethods) > 0 {
				op.Attributes = append(op.Attributes, &configv1alpha1.AttributeValues{Name: attrMethod, Values: o.Methods, NotValues: o.NotMethods})
			}
			rule.To = append(rule.To, op)
		}
		out.Rules = append(out.Rules, rule)
	}
	return out
}
