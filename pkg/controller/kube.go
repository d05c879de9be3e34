package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// GVRs of Rosetta's resources (the translators' kinds name their own).
var (
	MetaRouterGVR              = v1alpha1.SchemeGroupVersion.WithResource("metarouters")
	ApplicationProtocolGVR     = v1alpha1.SchemeGroupVersion.WithResource("applicationprotocols")
	MetaAuthorizationPolicyGVR = v1alpha1.SchemeGroupVersion.WithResource("metaauthorizationpolicies")
)

// KubeSource watches the API server with informers. Event handlers only
// signal a change; Inputs reads the informers' caches.
type KubeSource struct {
	kube   informers.SharedInformerFactory
	istio  istioinformers.SharedInformerFactory
	dyn    dynamicinformer.DynamicSharedInformerFactory
	synced []cache.InformerSynced
	// The dynamic informers' own listers expect unstructured objects; the
	// transform stores typed ones, so they are read from the indexers.
	routers   cache.Indexer
	protos    cache.Indexer
	metaAuthz cache.Indexer
	// kinds are the registered translators' kinds and their caches.
	kinds []kindCache
	// Dynamic is the client status writes go through.
	Dynamic dynamic.Interface
	// SecretRefresh is how often the credential Secrets are read again
	// (DefaultSecretRefresh when 0); set it before Start.
	SecretRefresh time.Duration
	// Log reports Secrets that cannot be read (slog.Default() when nil).
	Log     *slog.Logger
	secrets *credentialSecrets
	// ctx ends the Secret reads when the source stops.
	ctx context.Context
	// aeraki watches Aeraki's resources when their CRDs are installed.
	aeraki *aerakiSource
}

// kindCache is a translator's kind and the cache of its informer.
type kindCache struct {
	kind  Kind
	cache cache.Indexer
}

// NewKubeSource sets up the informers; changed is called on every event.
func NewKubeSource(cfg *rest.Config, changed func()) (*KubeSource, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("controller: kubernetes client: %w", err)
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("controller: istio client: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("controller: dynamic client: %w", err)
	}
	s := &KubeSource{
		kube:    informers.NewSharedInformerFactory(kc, 0),
		istio:   istioinformers.NewSharedInformerFactory(ic, 0),
		dyn:     dynamicinformer.NewDynamicSharedInformerFactory(dc, 0),
		Dynamic: dc,
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}
	add := func(inf cache.SharedIndexInformer, transform cache.TransformFunc) error {
		if transform != nil {
			if err := inf.SetTransform(transform); err != nil {
				return err
			}
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		s.synced = append(s.synced, inf.HasSynced)
		return nil
	}
	core := s.kube.Core().V1()
	net := s.istio.Networking().V1()
	sec := s.istio.Security().V1()
	routers := s.dyn.ForResource(MetaRouterGVR)
	protos := s.dyn.ForResource(ApplicationProtocolGVR)
	metaAuthz := s.dyn.ForResource(MetaAuthorizationPolicyGVR)
	for _, step := range []struct {
		inf       cache.SharedIndexInformer
		transform cache.TransformFunc
	}{
		{core.Services().Informer(), nil},
		{s.kube.Discovery().V1().EndpointSlices().Informer(), nil},
		// Only a Pod's labels (subsets, tlsMode) and service account
		// (the identity upstream mTLS verifies) matter; dropping the rest
		// keeps the controller small in big clusters.
		{core.Pods().Informer(), slimPod},
		{net.ServiceEntries().Informer(), nil},
		{net.WorkloadEntries().Informer(), nil},
		{net.DestinationRules().Informer(), nil},
		{net.Sidecars().Informer(), nil},
		{net.VirtualServices().Informer(), nil},
		{net.Gateways().Informer(), nil},
		// Only a Namespace's labels (steering's opt-in) matter.
		{core.Namespaces().Informer(), slimNamespace},
		{routers.Informer(), typed[v1alpha1.MetaRouter]},
		{protos.Informer(), typed[v1alpha1.ApplicationProtocol]},
		{sec.PeerAuthentications().Informer(), nil},
		{sec.AuthorizationPolicies().Informer(), nil},
		{metaAuthz.Informer(), typed[v1alpha1.MetaAuthorizationPolicy]},
		{s.istio.Telemetry().V1().Telemetries().Informer(), nil},
	} {
		if err := add(step.inf, step.transform); err != nil {
			return nil, fmt.Errorf("controller: informer: %w", err)
		}
	}
	s.routers, s.protos = routers.Informer().GetIndexer(), protos.Informer().GetIndexer()
	s.metaAuthz = metaAuthz.Informer().GetIndexer()
	for _, k := range registeredKinds() {
		inf := s.dyn.ForResource(k.GVR).Informer()
		if err := add(inf, typedKind(k)); err != nil {
			return nil, fmt.Errorf("controller: %s informer: %w", k.Kind, err)
		}
		s.kinds = append(s.kinds, kindCache{k, inf.GetIndexer()})
	}
	s.secrets = newCredentialSecrets(kc.CoreV1(), changed)
	s.ctx = context.Background()
	s.aeraki = newAerakiSource(kc.Discovery(), dynamicinformer.NewDynamicSharedInformerFactory(dc, 0), changed)
	return s, nil
}

func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, UID: p.UID, ResourceVersion: p.ResourceVersion,
	}, Spec: corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName}}, nil
}

func slimNamespace(obj any) (any, error) {
	n, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, UID: n.UID, ResourceVersion: n.ResourceVersion}}, nil
}

// typed converts the dynamic informer's unstructured objects to Go types
// once, when they enter the cache, rather than on every push.
func typed[T any](obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil, fmt.Errorf("controller: convert %s: %w", u.GetKind(), err)
	}
	return out, nil
}

// typedKind converts a translator's kind like typed does.
func typedKind(k Kind) cache.TransformFunc {
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		out := k.New()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
			return nil, fmt.Errorf("controller: convert %s: %w", u.GetKind(), err)
		}
		return out, nil
	}
}

// Start starts the informers, and the credential Secrets' refresh every
// SecretRefresh, and waits for the informers' caches, or ctx.
func (s *KubeSource) Start(ctx context.Context) error {
	s.kube.Start(ctx.Done())
	s.istio.Start(ctx.Done())
	s.dyn.Start(ctx.Done())
	s.startSecrets(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return fmt.Errorf("controller: informer caches did not sync: %w", ctx.Err())
	}
	if s.Log != nil {
		s.aeraki.log = s.Log
	}
	if err := s.aeraki.start(ctx); err != nil {
		return fmt.Errorf("controller: aeraki informers: %w", err)
	}
	return nil
}

// Inputs reads the informers' caches.
func (s *KubeSource) Inputs() (*Inputs, error) {
	in := &Inputs{}
	var err error
	all := labels.Everything()
	core := s.kube.Core().V1()
	net := s.istio.Networking().V1()
	if in.Services, err = core.Services().Lister().List(all); err != nil {
		return nil, err
	}
	if in.EndpointSlices, err = s.kube.Discovery().V1().EndpointSlices().Lister().List(all); err != nil {
		return nil, err
	}
	if in.Pods, err = core.Pods().Lister().List(all); err != nil {
		return nil, err
	}
	if in.ServiceEntries, err = net.ServiceEntries().Lister().List(all); err != nil {
		return nil, err
	}
	if in.WorkloadEntries, err = net.WorkloadEntries().Lister().List(all); err != nil {
		return nil, err
	}
	if in.DestinationRules, err = net.DestinationRules().Lister().List(all); err != nil {
		return nil, err
	}
	if in.Sidecars, err = net.Sidecars().Lister().List(all); err != nil {
		return nil, err
	}
	if in.VirtualServices, err = net.VirtualServices().Lister().List(all); err != nil {
		return nil, err
	}
	if in.Namespaces, err = core.Namespaces().Lister().List(all); err != nil {
		return nil, err
	}
	if in.Gateways, err = net.Gateways().Lister().List(all); err != nil {
		return nil, err
	}
	if in.MetaRouters, err = listTyped[v1alpha1.MetaRouter](s.routers); err != nil {
		return nil, err
	}
	if in.ApplicationProtocols, err = listTyped[v1alpha1.ApplicationProtocol](s.protos); err != nil {
		return nil, err
	}
	sec := s.istio.Security().V1()
	if in.PeerAuthentications, err = sec.PeerAuthentications().Lister().List(all); err != nil {
		return nil, err
	}
	if in.AuthorizationPolicies, err = sec.AuthorizationPolicies().Lister().List(all); err != nil {
		return nil, err
	}
	if in.MetaAuthorizationPolicies, err = listTyped[v1alpha1.MetaAuthorizationPolicy](s.metaAuthz); err != nil {
		return nil, err
	}
	if in.Telemetries, err = s.istio.Telemetry().V1().Telemetries().Lister().List(all); err != nil {
		return nil, err
	}
	for _, kc := range s.kinds {
		for _, o := range kc.cache.List() {
			if obj, ok := o.(metav1.Object); ok {
				in.addObjects(kc.kind.Kind, obj)
			}
		}
	}
	s.aeraki.addTo(in)
	in.Secrets = s.secrets.get(s.ctx, secretRefs(in))
	return in, nil
}

// startSecrets starts re-reading the named Secrets every SecretRefresh.
func (s *KubeSource) startSecrets(ctx context.Context) {
	s.ctx = ctx
	if s.Log != nil {
		s.secrets.log = s.Log
	}
	every := s.SecretRefresh
	if every <= 0 {
		every = DefaultSecretRefresh
	}
	go s.secrets.refresh(ctx, every)
}

func listTyped[T any](ix cache.Indexer) ([]*T, error) {
	objs := ix.List()
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// CachedVirtualServices lists the VirtualServices in the cache: what
// OwnedWriter compares its own with.
func (s *KubeSource) CachedVirtualServices() []*networkingv1.VirtualService {
	out, _ := s.istio.Networking().V1().VirtualServices().Lister().List(labels.Everything())
	return out
}

// CachedServices lists the Services in the cache.
func (s *KubeSource) CachedServices() []*corev1.Service {
	out, _ := s.kube.Core().V1().Services().Lister().List(labels.Everything())
	return out
}

// MetaRouter returns the cached MetaRouter, or nil.
func (s *KubeSource) MetaRouter(ns, name string) *v1alpha1.MetaRouter {
	o, ok, err := s.routers.GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	mr, _ := o.(*v1alpha1.MetaRouter)
	return mr
}

// MetaRouterObject returns the cached MetaRouter a status key
// ("namespace/name") names: StatusWriter.Current for MetaRouters.
func (s *KubeSource) MetaRouterObject(key string) (StatusObject, bool) {
	ns, name, _ := strings.Cut(key, "/")
	if isAerakiName(name) {
		return s.aeraki.statusObject("MetaRouter", ns, name)
	}
	mr := s.MetaRouter(ns, name)
	if mr == nil {
		return StatusObject{}, false
	}
	return StatusObject{GVR: MetaRouterGVR, Namespace: ns, Name: name, Generation: mr.Generation, Status: mr.Status}, true
}

// AuthorizationObject returns the cached MetaAuthorizationPolicy an
// authorization status key ("<Kind>/namespace/name", as
// Index.AuthorizationStatuses keys them) names: StatusWriter.Current for
// them.
func (s *KubeSource) AuthorizationObject(key string) (StatusObject, bool) {
	kind, ns, name, ok := splitStatusKey(key)
	if !ok || kind != metaAuthzKind {
		return StatusObject{}, false
	}
	o, found, err := s.metaAuthz.GetByKey(ns + "/" + name)
	p, is := o.(*v1alpha1.MetaAuthorizationPolicy)
	if err != nil || !found || !is {
		return StatusObject{}, false
	}
	return StatusObject{GVR: MetaAuthorizationPolicyGVR, Namespace: ns, Name: name, Generation: p.Generation, Status: p.Status}, true
}

// ProtocolObject returns the cached object of a translator's kind that a
// protocol status key ("<Kind>/namespace/name", as Index.ProtocolStatuses
// keys them) names: StatusWriter.Current for them. ok is false for a kind
// whose status the controller does not write.
func (s *KubeSource) ProtocolObject(key string) (StatusObject, bool) {
	kind, ns, name, ok := splitStatusKey(key)
	if !ok {
		return StatusObject{}, false
	}
	if isAerakiName(name) {
		return s.aeraki.statusObject(kind, ns, name)
	}
	for _, kc := range s.kinds {
		if kc.kind.Kind != kind || kc.kind.Status == nil {
			continue
		}
		o, found, err := kc.cache.GetByKey(ns + "/" + name)
		obj, is := o.(metav1.Object)
		if err != nil || !found || !is {
			return StatusObject{}, false
		}
		return StatusObject{GVR: kc.kind.GVR, Namespace: ns, Name: name, Generation: obj.GetGeneration(), Status: kc.kind.Status(obj)}, true
	}
	return StatusObject{}, false
}

// splitStatusKey splits a "<Kind>/namespace/name" status key.
func splitStatusKey(key string) (kind, ns, name string, ok bool) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
