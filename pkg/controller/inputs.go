// Package controller turns the mesh's configuration (Kubernetes Services
// and EndpointSlices, Istio ServiceEntries, DestinationRules, Sidecars,
// PeerAuthentications and AuthorizationPolicies, Rosetta's MetaRouters,
// ApplicationProtocols and authorization policies) into the xDS resources
// of each Rosetta proxy.
//
// The pipeline runs one way: a source (informers or a folder) fills Inputs;
// Builder.Build turns Inputs into an immutable Index; Index.Generate makes
// one proxy's config.Resources. Nothing here talks to the network.
package controller

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	dubbov1 "github.com/rosetta-mesh/rosetta/pkg/apis/dubbo/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
)

// Inputs is every object the controller reads, as the source last saw them.
type Inputs struct {
	Services             []*corev1.Service
	EndpointSlices       []*discoveryv1.EndpointSlice
	Pods                 []*corev1.Pod
	ServiceEntries       []*networkingv1.ServiceEntry
	WorkloadEntries      []*networkingv1.WorkloadEntry
	DestinationRules     []*networkingv1.DestinationRule
	Sidecars             []*networkingv1.Sidecar
	MetaRouters          []*v1alpha1.MetaRouter
	ApplicationProtocols []*v1alpha1.ApplicationProtocol
	RedisServices        []*redisv1.RedisService
	RedisDestinations    []*redisv1.RedisDestination
	// Secrets are read for Redis auth (Kubernetes mode: only those labelled
	// redis.rosetta.dev/credentials=true; see redis_kube.go).
	Secrets []*corev1.Secret
	// PeerAuthentications set the mTLS mode of proxies' listeners
	// (security.istio.io, v1 or v1beta1: the same spec).
	PeerAuthentications []*securityv1.PeerAuthentication
	// AuthorizationPolicies, MetaAuthorizationPolicies and
	// DubboAuthorizationPolicies make the listeners' authorization
	// (authorization.go).
	AuthorizationPolicies      []*securityv1.AuthorizationPolicy
	MetaAuthorizationPolicies  []*v1alpha1.MetaAuthorizationPolicy
	DubboAuthorizationPolicies []*dubbov1.DubboAuthorizationPolicy
}

// maxFileBytes caps one config file of the folder source.
const maxFileBytes = 16 << 20

// LoadDir reads every .yaml, .yml and .json file under dir (recursively,
// in name order). Kinds the controller does not use are skipped, so a
// folder may also hold Deployments and the like.
func LoadDir(dir string) (*Inputs, error) {
	return (&DirLoader{Dir: dir}).Load()
}

// DirLoader reads a folder like LoadDir, and re-parses only the files
// whose inode, size, or modification or change time differ from its last
// Load. (The inode and change time come from the system's stat, where
// inodeAndChange knows it: Linux and the BSDs, macOS among them.)
type DirLoader struct {
	Dir string

	mu    sync.Mutex
	files map[string]parsedFile
}

type parsedFile struct {
	stamp fileStamp
	in    *Inputs
}

// fileStamp tells whether a file may have changed: a replaced file (the
// usual editor and kubectl-style write) has a new inode; one written in
// place a new modification or change time or size.
type fileStamp struct {
	mod, change int64 // nanoseconds since the epoch
	size        int64
	inode       uint64
}

func stampOf(st os.FileInfo) fileStamp {
	s := fileStamp{mod: st.ModTime().UnixNano(), size: st.Size()}
	s.inode, s.change = inodeAndChange(st)
	return s
}

// Load reads the folder.
func (l *DirLoader) Load() (*Inputs, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var files []string
	err := filepath.WalkDir(l.Dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != l.Dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			if !strings.HasPrefix(d.Name(), ".") {
				files = append(files, path)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("controller: read config dir: %w", err)
	}
	sort.Strings(files)
	next := make(map[string]parsedFile, len(files))
	in := &Inputs{}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
		pf, ok := l.files[f]
		if stamp := stampOf(st); !ok || pf.stamp != stamp {
			data, err := readCapped(f)
			if err != nil {
				return nil, err
			}
			pf = parsedFile{stamp: stamp, in: &Inputs{}}
			if err := pf.in.AddYAML(data); err != nil {
				return nil, fmt.Errorf("controller: %s: %w", f, err)
			}
		}
		next[f] = pf
		in.append(pf.in)
	}
	l.files = next
	return in, nil
}

func (in *Inputs) append(o *Inputs) {
	in.Services = append(in.Services, o.Services...)
	in.EndpointSlices = append(in.EndpointSlices, o.EndpointSlices...)
	in.Pods = append(in.Pods, o.Pods...)
	in.ServiceEntries = append(in.ServiceEntries, o.ServiceEntries...)
	in.WorkloadEntries = append(in.WorkloadEntries, o.WorkloadEntries...)
	in.DestinationRules = append(in.DestinationRules, o.DestinationRules...)
	in.Sidecars = append(in.Sidecars, o.Sidecars...)
	in.MetaRouters = append(in.MetaRouters, o.MetaRouters...)
	in.ApplicationProtocols = append(in.ApplicationProtocols, o.ApplicationProtocols...)
	in.appendRedis(o)
	in.PeerAuthentications = append(in.PeerAuthentications, o.PeerAuthentications...)
	in.AuthorizationPolicies = append(in.AuthorizationPolicies, o.AuthorizationPolicies...)
	in.MetaAuthorizationPolicies = append(in.MetaAuthorizationPolicies, o.MetaAuthorizationPolicies...)
	in.DubboAuthorizationPolicies = append(in.DubboAuthorizationPolicies, o.DubboAuthorizationPolicies...)
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("controller: %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("controller: %s: larger than %d bytes", path, maxFileBytes)
	}
	return data, nil
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// AddYAML decodes a multi-document YAML (or JSON) stream and adds the
// objects it knows. A List's items are added one by one.
func (in *Inputs) AddYAML(data []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for i := 0; ; i++ {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("document %d: %w", i, err)
		}
		if len(raw) == 0 {
			continue
		}
		js, err := yaml.Marshal(raw)
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if err := in.addObject(js); err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
	}
}

func (in *Inputs) addObject(doc []byte) error {
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return errors.New("apiVersion and kind are required")
	}
	group := tm.APIVersion
	if i := strings.LastIndex(group, "/"); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	if strings.HasSuffix(tm.Kind, "List") {
		var list struct {
			Items []map[string]any `json:"items"`
		}
		if err := yaml.Unmarshal(doc, &list); err != nil {
			return err
		}
		for _, item := range list.Items {
			js, err := yaml.Marshal(item)
			if err != nil {
				return err
			}
			if err := in.addObject(js); err != nil {
				return err
			}
		}
		return nil
	}
	switch group + "/" + tm.Kind {
	case "/Service":
		return decodeInto(doc, &in.Services)
	case "discovery.k8s.io/EndpointSlice":
		return decodeInto(doc, &in.EndpointSlices)
	case "/Pod":
		return decodeInto(doc, &in.Pods)
	case "networking.istio.io/ServiceEntry":
		return decodeInto(doc, &in.ServiceEntries)
	case "networking.istio.io/WorkloadEntry":
		return decodeInto(doc, &in.WorkloadEntries)
	case "networking.istio.io/DestinationRule":
		return decodeInto(doc, &in.DestinationRules)
	case "networking.istio.io/Sidecar":
		return decodeInto(doc, &in.Sidecars)
	case v1alpha1.GroupName + "/MetaRouter", "metaprotocol.aeraki.io/MetaRouter":
		return decodeInto(doc, &in.MetaRouters)
	case v1alpha1.GroupName + "/ApplicationProtocol", "metaprotocol.aeraki.io/ApplicationProtocol":
		return decodeInto(doc, &in.ApplicationProtocols)
	case "security.istio.io/PeerAuthentication":
		return decodeInto(doc, &in.PeerAuthentications)
	case "security.istio.io/AuthorizationPolicy":
		return decodeInto(doc, &in.AuthorizationPolicies)
	case v1alpha1.GroupName + "/MetaAuthorizationPolicy":
		return decodeInto(doc, &in.MetaAuthorizationPolicies)
	case dubbov1.GroupName + "/DubboAuthorizationPolicy", dubbov1.AerakiGroupName + "/DubboAuthorizationPolicy":
		return decodeInto(doc, &in.DubboAuthorizationPolicies)
	}
	if ok, err := in.addRedisObject(group, tm.Kind, doc); ok {
		return err
	}
	return nil
}

// decodeInto decodes strictly, so a misspelt field is an error rather than
// a silently dropped setting.
func decodeInto[T any](doc []byte, list *[]*T) error {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}
