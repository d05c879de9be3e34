// Package controller turns the mesh's configuration (Kubernetes Services
// and EndpointSlices, Istio ServiceEntries, DestinationRules, Sidecars,
// PeerAuthentications and AuthorizationPolicies, Rosetta's MetaRouters,
// ApplicationProtocols and authorization policies, and the objects of the
// protocols' own kinds through their translators: translator.go) into the
// xDS resources of each Rosetta proxy.
//
// The pipeline runs one way: a source (informers or a folder) fills Inputs;
// Builder.Build turns Inputs into an immutable Index; Index.Generate makes
// one proxy's config.Resources. Nothing here talks to the network.
package controller

import (
	"bufio"
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
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Inputs is every object the controller reads, as the source last saw them.
type Inputs struct {
	Services         []*corev1.Service
	EndpointSlices   []*discoveryv1.EndpointSlice
	Pods             []*corev1.Pod
	ServiceEntries   []*networkingv1.ServiceEntry
	WorkloadEntries  []*networkingv1.WorkloadEntry
	DestinationRules []*networkingv1.DestinationRule
	Sidecars         []*networkingv1.Sidecar
	// VirtualServices and Namespaces are read for steering (steering.go):
	// users' VirtualServices it must not clobber, namespaces' opt-in labels.
	VirtualServices []*networkingv1.VirtualService
	Namespaces      []*corev1.Namespace
	// Gateways are what MetaRouters bound to a gateway serve (gateway.go).
	Gateways             []*networkingv1.Gateway
	MetaRouters          []*v1alpha1.MetaRouter
	ApplicationProtocols []*v1alpha1.ApplicationProtocol
	// Objects are the objects of the translators' kinds, by Kind.Kind
	// (ObjectsOf reads them as their Go type).
	Objects map[string][]metav1.Object
	// Secrets are the credentials Gateways and translators' objects name
	// (Kubernetes mode: read by name, those a translator names only when
	// labelled with its Credentials.Label; see secrets.go).
	Secrets []*corev1.Secret
	// PeerAuthentications set the mTLS mode of proxies' listeners
	// (security.istio.io, v1 or v1beta1: the same spec).
	PeerAuthentications []*securityv1.PeerAuthentication
	// AuthorizationPolicies and MetaAuthorizationPolicies make the
	// listeners' authorization (authorization.go), with the protocols'
	// own policies.
	AuthorizationPolicies     []*securityv1.AuthorizationPolicy
	MetaAuthorizationPolicies []*v1alpha1.MetaAuthorizationPolicy
	// Telemetries set proxies' tracing and access logs (telemetry.go).
	Telemetries []*telemetryv1.Telemetry
	// Unused reports the documents of the folder source the controller
	// does not use (see Unused.Rejected); the Pipeline logs them and counts
	// the rejected ones.
	Unused []Unused
}

// maxFileBytes caps one config file of the folder source.
const maxFileBytes = 16 << 20

// LoadDir reads every .yaml, .yml and .json file under dir (recursively,
// in name order). Objects of APIs the controller does not read are
// skipped, so a folder may also hold Deployments and the like; a file
// with a document the controller rejects (see Unused) adds nothing. Both
// are listed in Inputs.Unused.
func LoadDir(dir string) (*Inputs, error) {
	return (&DirLoader{Dir: dir}).Load()
}

// DirLoader reads a folder like LoadDir, and re-parses only the files
// whose inode, size, or modification or change time differ from its last
// Load. A file that loaded once and now has a rejected document keeps its
// last good objects in force, so a typo never removes routes. (The inode and change time come from the system's stat, where
// inodeAndChange knows it: Linux and the BSDs, macOS among them.)
type DirLoader struct {
	Dir string

	mu    sync.Mutex
	files map[string]parsedFile
	// names are the keys of files, sorted.
	names []string

	// pending guards what the watcher reported since the last Load
	// (folder.go): once watching, a Load reads the touched paths only, and
	// walks the folder when rescan is set.
	pending  sync.Mutex
	watching bool
	rescan   bool
	touched  map[string]bool
}

type parsedFile struct {
	stamp fileStamp
	// in are the objects in force: this version's, or the last good
	// version's when this one has a rejected document.
	in *Inputs
	// unused are this version's documents the controller does not use.
	unused []Unused
	// loaded is whether a version of the file ever loaded.
	loaded bool
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

// Load reads the folder: every file, or, once a watcher reports the
// changes (RunDir), the files it named since the last Load.
func (l *DirLoader) Load() (*Inputs, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	paths, walk := l.takeTouched()
	if !walk && l.files != nil {
		done, err := l.readTouched(paths)
		if err != nil {
			l.untake(paths, false)
			return nil, err
		}
		if done {
			return l.inputs(), nil
		}
	}
	in, err := l.loadAll()
	if err != nil {
		l.untake(paths, true)
		return nil, err
	}
	return in, nil
}

// loadAll walks the folder and reads every file, parsing those whose
// stamp changed. Callers hold l.mu.
func (l *DirLoader) loadAll() (*Inputs, error) {
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
		if configFile(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("controller: read config dir: %w", err)
	}
	sort.Strings(files)
	next := make(map[string]parsedFile, len(files))
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
			pf = parseFile(f, stamp, data, pf)
		}
		next[f] = pf
	}
	l.files, l.names = next, files
	return l.inputs(), nil
}

// configFile says whether the folder source reads a file of this name: a
// .yaml, .yml or .json file whose name is not hidden.
func configFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return !strings.HasPrefix(filepath.Base(path), ".")
	}
	return false
}

// parseFile parses a file's new version. When a document is rejected, the
// objects of last (the file's last parse; zero if none) stay in force.
func parseFile(path string, stamp fileStamp, data []byte, last parsedFile) parsedFile {
	pf := parsedFile{stamp: stamp, in: &Inputs{}, loaded: true}
	pf.in.addDocuments(path, data, &pf.unused)
	if len(rejected(pf.unused)) == 0 {
		return pf
	}
	pf.in, pf.loaded = &Inputs{}, last.loaded
	if last.loaded {
		pf.in = last.in
	}
	for i := range pf.unused {
		pf.unused[i].PreviousInForce = last.loaded
	}
	return pf
}

func (in *Inputs) append(o *Inputs) {
	in.Services = append(in.Services, o.Services...)
	in.EndpointSlices = append(in.EndpointSlices, o.EndpointSlices...)
	in.Pods = append(in.Pods, o.Pods...)
	in.ServiceEntries = append(in.ServiceEntries, o.ServiceEntries...)
	in.WorkloadEntries = append(in.WorkloadEntries, o.WorkloadEntries...)
	in.DestinationRules = append(in.DestinationRules, o.DestinationRules...)
	in.Sidecars = append(in.Sidecars, o.Sidecars...)
	in.VirtualServices = append(in.VirtualServices, o.VirtualServices...)
	in.Namespaces = append(in.Namespaces, o.Namespaces...)
	in.Gateways = append(in.Gateways, o.Gateways...)
	in.MetaRouters = append(in.MetaRouters, o.MetaRouters...)
	in.ApplicationProtocols = append(in.ApplicationProtocols, o.ApplicationProtocols...)
	for k, objs := range o.Objects {
		in.addObjects(k, objs...)
	}
	in.Secrets = append(in.Secrets, o.Secrets...)
	in.PeerAuthentications = append(in.PeerAuthentications, o.PeerAuthentications...)
	in.AuthorizationPolicies = append(in.AuthorizationPolicies, o.AuthorizationPolicies...)
	in.MetaAuthorizationPolicies = append(in.MetaAuthorizationPolicies, o.MetaAuthorizationPolicies...)
	in.Telemetries = append(in.Telemetries, o.Telemetries...)
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
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// AddYAML decodes a multi-document YAML (or JSON) stream and adds the
// objects it knows. A List's items are added one by one. It fails on the
// first document the controller cannot use (see Unused); objects of other
// APIs (Deployments and the like) are skipped.
func (in *Inputs) AddYAML(data []byte) error {
	var unused []Unused
	in.addDocuments("", data, &unused)
	for _, u := range unused {
		if u.Rejected() {
			return u.Err
		}
	}
	return nil
}

// addDocuments decodes a multi-document stream read from file, adds the
// objects the controller uses, and appends a report of every other one to
// unused.
func (in *Inputs) addDocuments(file string, data []byte, unused *[]Unused) {
	if !isJSON(data) {
		in.addYAMLDocuments(file, data, unused)
		return
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for i := 0; ; i++ {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if !errors.Is(err, io.EOF) {
				// The decoder cannot find the next object after a syntax
				// error, so the rest of the stream is lost too.
				*unused = append(*unused, invalidYAML(file, i, err))
			}
			return
		}
		if len(raw) > 0 {
			in.addDocument(file, i, raw, nil, unused)
		}
	}
}

// addYAMLDocuments is addDocuments for YAML: each document's own text is
// decoded into its object, not text written again from the decoded map
// (which cost a fifth of the controller's start at 10,000 services), and a
// document with a syntax error loses only itself.
func (in *Inputs) addYAMLDocuments(file string, data []byte, unused *[]Unused) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				*unused = append(*unused, invalidYAML(file, i, err))
			}
			return
		}
		var raw map[string]any
		if err := yaml.Unmarshal(doc, &raw); err != nil {
			*unused = append(*unused, invalidYAML(file, i, err))
			continue
		}
		if len(raw) > 0 {
			in.addDocument(file, i, raw, doc, unused)
		}
	}
}

// isJSON reports whether data starts as a JSON object does.
func isJSON(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

func invalidYAML(file string, doc int, err error) Unused {
	return Unused{File: file, Doc: doc, Item: -1, Reason: ReasonInvalidYAML, Err: fmt.Errorf("document %d: %w", doc, err)}
}

// addDocument adds one decoded document, or each item of a List; doc is
// the document's YAML, nil when it is to be written from raw.
func (in *Inputs) addDocument(file string, i int, raw map[string]any, doc []byte, unused *[]Unused) {
	kind, _ := raw["kind"].(string)
	items, isList := raw["items"].([]any)
	if !isList || !strings.HasSuffix(kind, "List") {
		in.addItem(file, i, -1, raw, doc, unused)
		return
	}
	for j, item := range items {
		obj, ok := item.(map[string]any)
		if !ok {
			*unused = append(*unused, Unused{File: file, Doc: i, Item: j, Reason: ReasonInvalidObject,
				Err: fmt.Errorf("document %d: items[%d]: not an object", i, j)})
			continue
		}
		in.addItem(file, i, j, obj, nil, unused)
	}
}

func (in *Inputs) addItem(file string, doc, item int, raw map[string]any, js []byte, unused *[]Unused) {
	u := Unused{File: file, Doc: doc, Item: item}
	var err error
	if js == nil {
		js, err = yaml.Marshal(raw)
	}
	if err == nil {
		var tm typeMeta
		if tm, err = readTypeMeta(raw, js); err == nil {
			u.APIVersion, u.Kind = tm.APIVersion, tm.Kind
			u.Name = tm.Metadata.Name
			if tm.Metadata.Namespace != "" {
				u.Name = tm.Metadata.Namespace + "/" + tm.Metadata.Name
			}
			err = in.addObject(js, tm)
		}
	}
	if err == nil {
		return
	}
	u.Reason = ReasonInvalidObject
	var ue *unusedError
	if errors.As(err, &ue) {
		u.Reason = ue.reason
	}
	where := fmt.Sprintf("document %d", doc)
	if item >= 0 {
		where += fmt.Sprintf(": items[%d]", item)
	}
	u.Err = fmt.Errorf("%s: %w", where, err)
	*unused = append(*unused, u)
}

// readTypeMeta reads an object's type and name from its decoded map when
// they are strings there, as they nearly always are; else from doc, its
// YAML, so that a scalar of another type is read as the YAML decoder reads
// it into a string field. Parsing the YAML again for every object took a
// third of the controller's start at 10,000 services.
func readTypeMeta(raw map[string]any, doc []byte) (typeMeta, error) {
	var tm typeMeta
	meta, _ := raw["metadata"].(map[string]any)
	fields := []struct {
		from map[string]any
		key  string
		to   *string
	}{
		{raw, "apiVersion", &tm.APIVersion}, {raw, "kind", &tm.Kind},
		{meta, "name", &tm.Metadata.Name}, {meta, "namespace", &tm.Metadata.Namespace},
	}
	for _, f := range fields {
		v, present := f.from[f.key]
		s, isString := v.(string)
		if present && !isString || raw["metadata"] != nil && meta == nil {
			tm = typeMeta{}
			err := yaml.Unmarshal(doc, &tm)
			return tm, err
		}
		*f.to = s
	}
	return tm, nil
}

// addObject adds one object of type tm; an *unusedError says why it is not
// used.
func (in *Inputs) addObject(doc []byte, tm typeMeta) error {
	if tm.Kind == "" || tm.APIVersion == "" {
		return &unusedError{ReasonMissingType, errors.New("apiVersion and kind are required")}
	}
	group := apiGroup(tm.APIVersion)
	if decode, ok := decoders[group+"/"+tm.Kind]; ok {
		return decode(in, doc)
	}
	if k, ok := kindOf(group, tm.Kind); ok {
		obj := k.New()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return err
		}
		if group != k.GVR.Group {
			aerakiName(obj, group)
		}
		in.addObjects(k.Kind, obj)
		return nil
	}
	return unusedKind(group, tm.Kind)
}

// apiGroup is the group of an apiVersion ("" for the core group's "v1").
func apiGroup(apiVersion string) string {
	if i := strings.LastIndex(apiVersion, "/"); i >= 0 {
		return apiVersion[:i]
	}
	return ""
}

// decoders add the objects the controller reads, by "group/Kind"; those
// of the translators' kinds are added by addObject.
var decoders = map[string]func(in *Inputs, doc []byte) error{
	"/Service":                            func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Services) },
	"discovery.k8s.io/EndpointSlice":      func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.EndpointSlices) },
	"/Pod":                                func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Pods) },
	"networking.istio.io/ServiceEntry":    func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.ServiceEntries) },
	"networking.istio.io/WorkloadEntry":   func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.WorkloadEntries) },
	"networking.istio.io/DestinationRule": func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.DestinationRules) },
	"networking.istio.io/Sidecar":         func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Sidecars) },
	"networking.istio.io/VirtualService":  func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.VirtualServices) },
	"/Namespace":                          func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Namespaces) },
	"networking.istio.io/Gateway":         func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Gateways) },
	v1alpha1.GroupName + "/MetaRouter":    func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.MetaRouters) },
	"metaprotocol.aeraki.io/MetaRouter": func(in *Inputs, doc []byte) error {
		return decodeAeraki(doc, &in.MetaRouters, AerakiMetaProtocolGroup)
	},
	v1alpha1.GroupName + "/ApplicationProtocol": func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.ApplicationProtocols) },
	"metaprotocol.aeraki.io/ApplicationProtocol": func(in *Inputs, doc []byte) error {
		return decodeAeraki(doc, &in.ApplicationProtocols, AerakiMetaProtocolGroup)
	},
	"security.istio.io/PeerAuthentication":  func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.PeerAuthentications) },
	"security.istio.io/AuthorizationPolicy": func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.AuthorizationPolicies) },
	v1alpha1.GroupName + "/MetaAuthorizationPolicy": func(in *Inputs, doc []byte) error {
		return decodeInto(doc, &in.MetaAuthorizationPolicies)
	},
	"telemetry.istio.io/Telemetry": func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Telemetries) },
	"/Secret":                      func(in *Inputs, doc []byte) error { return decodeInto(doc, &in.Secrets) },
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

// decodeAeraki decodes an object of Aeraki's group as its Rosetta kind,
// named as the Kubernetes source names it (aerakiName).
func decodeAeraki[T any, PT interface {
	*T
	metav1.Object
}](doc []byte, list *[]PT, group string) error {
	var v PT = new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	aerakiName(v, group)
	*list = append(*list, v)
	return nil
}

// aerakiName renames an object read from Aeraki's group "<name>@<group>",
// as the Kubernetes source does (aerakiSource.addTo): an Aeraki object and
// a Rosetta object of the same name are two objects, with a status each,
// and a host both route is a conflict (the older wins).
func aerakiName(o metav1.Object, group string) {
	o.SetName(o.GetName() + "@" + group)
}
