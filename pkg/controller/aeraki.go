package controller

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// AerakiMetaProtocolGroup is Aeraki's group of MetaRouters and
// ApplicationProtocols; the protocols' kinds name theirs as AliasGroups.
const AerakiMetaProtocolGroup = "metaprotocol.aeraki.io"

// aerakiRecheck is how often the controller asks the API server whether
// Aeraki's CRDs have been installed since it started.
const aerakiRecheck = 30 * time.Second

// aerakiWatch is one of Aeraki's resources, the Rosetta kind its objects
// are read as, and its informer once the resource is served.
type aerakiWatch struct {
	gvr  schema.GroupVersionResource
	kind Kind
	inf  cache.SharedIndexInformer
}

// aerakiSource watches Aeraki's resources (metaprotocol.aeraki.io,
// redis.aeraki.io) in Kubernetes mode, each only once the API server
// serves it (its CRD is installed), so a migration can run Aeraki's and
// Rosetta's objects side by side. Their objects are read as Rosetta's,
// under the name "<name>@<group>": a name no Kubernetes object can have,
// so an Aeraki object and a Rosetta object of the same name are two
// objects, and a host both route is a conflict their statuses report (the
// older wins).
type aerakiSource struct {
	disc    discovery.DiscoveryInterface
	factory dynamicinformer.DynamicSharedInformerFactory
	changed func()
	log     *slog.Logger

	mu      sync.Mutex
	watches []*aerakiWatch
}

func newAerakiSource(disc discovery.DiscoveryInterface, factory dynamicinformer.DynamicSharedInformerFactory, changed func()) *aerakiSource {
	a := &aerakiSource{disc: disc, factory: factory, changed: changed, log: slog.Default()}
	aerakiVersion := schema.GroupVersion{Group: AerakiMetaProtocolGroup, Version: v1alpha1.SchemeGroupVersion.Version}
	for _, k := range []Kind{
		{Kind: "MetaRouter", GVR: MetaRouterGVR, New: func() metav1.Object { return &v1alpha1.MetaRouter{} },
			Status: func(o metav1.Object) v1alpha1.MetaRouterStatus { return o.(*v1alpha1.MetaRouter).Status }},
		{Kind: "ApplicationProtocol", GVR: ApplicationProtocolGVR, New: func() metav1.Object { return &v1alpha1.ApplicationProtocol{} }},
	} {
		a.watches = append(a.watches, &aerakiWatch{gvr: aerakiVersion.WithResource(k.GVR.Resource), kind: k})
	}
	for _, k := range registeredKinds() {
		for _, g := range k.AliasGroups {
			a.watches = append(a.watches, &aerakiWatch{gvr: schema.GroupVersionResource{Group: g, Version: k.GVR.Version, Resource: k.GVR.Resource}, kind: k})
		}
	}
	return a
}

// start starts the informers of the resources served now and waits for
// their caches; then, until ctx ends, it looks again every aerakiRecheck
// for resources installed later.
func (a *aerakiSource) start(ctx context.Context) error {
	if err := a.startServed(ctx); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(aerakiRecheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := a.startServed(ctx); err != nil {
					a.log.Warn("aeraki resources", "err", err)
				}
			}
		}
	}()
	return nil
}

// startServed starts an informer for each Aeraki resource the API server
// serves that has none yet, and waits for their caches.
func (a *aerakiSource) startServed(ctx context.Context) error {
	served := map[schema.GroupVersionResource]bool{}
	a.mu.Lock()
	pending := make([]*aerakiWatch, 0, len(a.watches))
	for _, w := range a.watches {
		if w.inf == nil {
			pending = append(pending, w)
		}
	}
	a.mu.Unlock()
	for _, w := range pending {
		gv := w.gvr.GroupVersion()
		if _, asked := served[gv.WithResource("")]; asked {
			continue
		}
		served[gv.WithResource("")] = true
		list, err := a.disc.ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			continue // not installed (NotFound), or not now: asked again later
		}
		for _, r := range list.APIResources {
			served[gv.WithResource(r.Name)] = true
		}
	}
	var started []cache.InformerSynced
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.changed() },
		UpdateFunc: func(any, any) { a.changed() },
		DeleteFunc: func(any) { a.changed() },
	}
	for _, w := range pending {
		if !served[w.gvr] {
			continue
		}
		inf := a.factory.ForResource(w.gvr).Informer()
		if err := inf.SetTransform(typedKind(w.kind)); err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		a.mu.Lock()
		w.inf = inf
		a.mu.Unlock()
		started = append(started, inf.HasSynced)
		a.log.Info("watching aeraki resources", "resource", w.gvr.String())
	}
	if len(started) == 0 {
		return nil
	}
	a.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), started...) {
		return ctx.Err()
	}
	a.changed()
	return nil
}

// addTo adds the cached Aeraki objects to in, as Rosetta's kinds, named
// "<name>@<group>".
func (a *aerakiSource) addTo(in *Inputs) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.watches {
		if w.inf == nil {
			continue
		}
		for _, o := range w.inf.GetIndexer().List() {
			ro, ok := o.(runtime.Object)
			if !ok {
				continue
			}
			obj, ok := ro.DeepCopyObject().(metav1.Object)
			if !ok {
				continue
			}
			obj.SetName(obj.GetName() + "@" + w.gvr.Group)
			switch t := obj.(type) {
			case *v1alpha1.MetaRouter:
				in.MetaRouters = append(in.MetaRouters, t)
			case *v1alpha1.ApplicationProtocol:
				in.ApplicationProtocols = append(in.ApplicationProtocols, t)
			default:
				in.addObjects(w.kind.Kind, obj)
			}
		}
	}
}

// statusObject returns the cached Aeraki object of kind that a status
// key's namespace and name ("<name>@<group>") name, for the status
// writer: its status is written to Aeraki's resource.
func (a *aerakiSource) statusObject(kind, ns, name string) (StatusObject, bool) {
	base, group, ok := cutLast(name, "@")
	if !ok {
		return StatusObject{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.watches {
		if w.inf == nil || w.kind.Kind != kind || w.gvr.Group != group || w.kind.Status == nil {
			continue
		}
		o, found, err := w.inf.GetIndexer().GetByKey(ns + "/" + base)
		obj, is := o.(metav1.Object)
		if err != nil || !found || !is {
			return StatusObject{}, false
		}
		return StatusObject{GVR: w.gvr, Namespace: ns, Name: base, Generation: obj.GetGeneration(), Status: w.kind.Status(obj)}, true
	}
	return StatusObject{}, false
}

// isAerakiName says whether a name is one addTo gave.
func isAerakiName(name string) bool {
	_, _, ok := cutLast(name, "@")
	return ok
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
