package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// aerakiKind is what an Aeraki kind becomes: Rosetta's apiVersion and a
// new object of Rosetta's type, to find the fields Rosetta lacks.
type aerakiKind struct {
	apiVersion string
	newObject  func() any
}

// aerakiKinds maps Aeraki's "group/Kind" to Rosetta's: the MetaProtocol
// kinds, and each protocol translator's kinds that name an Aeraki group
// as an alias (Redis's redis.aeraki.io).
func aerakiKinds() map[string]aerakiKind {
	rosetta := v1alpha1.SchemeGroupVersion.String()
	out := map[string]aerakiKind{
		"metaprotocol.aeraki.io/MetaRouter":          {rosetta, func() any { return &v1alpha1.MetaRouter{} }},
		"metaprotocol.aeraki.io/ApplicationProtocol": {rosetta, func() any { return &v1alpha1.ApplicationProtocol{} }},
	}
	for _, t := range controller.Translators() {
		for _, k := range t.Kinds {
			for _, g := range k.AliasGroups {
				newObj := k.New
				out[g+"/"+k.Kind] = aerakiKind{k.GVR.GroupVersion().String(), func() any { return newObj() }}
			}
		}
	}
	return out
}

// droppedField is a field of an Aeraki object that Rosetta's kind lacks;
// convert-aeraki leaves it out of what it writes.
type droppedField struct {
	File   string `json:"file"`
	Doc    int    `json:"doc"`
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Field  string `json:"field"`
	Value  any    `json:"value"`
	Reason string `json:"reason"`
}

func (d droppedField) String() string {
	v, _ := json.Marshal(d.Value)
	return fmt.Sprintf("%s: document %d: %s %s: %s (%s) %s", d.File, d.Doc, d.Kind, d.Name, d.Field, v, d.Reason)
}

// conversion is what convert-aeraki prints: every document of the input,
// Aeraki's rewritten to Rosetta's, and the fields it left out.
type conversion struct {
	Objects   []map[string]any `json:"objects"`
	Converted int              `json:"converted"`
	Dropped   []droppedField   `json:"dropped"`
}

func newConvertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "convert-aeraki FILE|DIR...",
		Short: "Rewrite Aeraki's MetaRouters, ApplicationProtocols and Redis resources as Rosetta's",
		Long: `Convert-aeraki reads YAML (or JSON) files, or every .yaml, .yml and .json file
under a folder, and prints them as one YAML stream with each object of Aeraki's
groups (metaprotocol.aeraki.io, redis.aeraki.io) rewritten to Rosetta's
(metaprotocol.rosetta.dev, redis.rosetta.dev). Rosetta's kinds carry Aeraki's
fields under the same names, so the rewrite changes the apiVersion; a field
Rosetta's kind does not have is left out and reported on standard error (with
--output json, in the document's "dropped" list), as is the status, which the
controller writes. Other objects are printed unchanged. Check the result with
rosettactl validate.`,
		Example: `  rosettactl convert-aeraki aeraki/ > rosetta.yaml && rosettactl validate rosetta.yaml`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := &conversion{Objects: []map[string]any{}, Dropped: []droppedField{}}
			for _, path := range args {
				if err := c.addPath(path); err != nil {
					return fmt.Errorf("convert-aeraki: %w", err)
				}
			}
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			if format == outputJSON {
				return writeResult(cmd.OutOrStdout(), format, c, nil)
			}
			for _, d := range c.Dropped {
				fmt.Fprintf(cmd.ErrOrStderr(), "dropped: %s\n", d)
			}
			return c.writeYAML(cmd.OutOrStdout())
		},
	}
}

// addPath converts a file, or every config file under a folder.
func (c *conversion) addPath(path string) error {
	var files []string
	err := filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (p == path || isConfigFile(p)) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if err := c.addFile(f); err != nil {
			return err
		}
	}
	return nil
}

func isConfigFile(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return !strings.HasPrefix(filepath.Base(p), ".")
	}
	return false
}

// maxConvertFile caps one input file, as the controller caps its own.
const maxConvertFile = 16 << 20

func (c *conversion) addFile(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConvertFile+1))
	if err != nil {
		return err
	}
	if len(data) > maxConvertFile {
		return fmt.Errorf("%s: larger than %d bytes", file, maxConvertFile)
	}
	kinds := aerakiKinds()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for i := 0; ; i++ {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		if len(doc) == 0 {
			continue
		}
		if err := c.addDoc(file, i, doc, kinds); err != nil {
			return err
		}
	}
}

// unknownField reads the field path from a strict decoding error:
// `unknown field "spec.routes[0].foo"`.
var unknownField = regexp.MustCompile(`^unknown field "(.*)"$`)

func (c *conversion) addDoc(file string, i int, doc map[string]any, kinds map[string]aerakiKind) error {
	apiVersion, _ := doc["apiVersion"].(string)
	kind, _ := doc["kind"].(string)
	group, _, _ := strings.Cut(apiVersion, "/")
	to, ok := kinds[group+"/"+kind]
	if !ok {
		c.Objects = append(c.Objects, doc)
		return nil
	}
	name := objectName(doc)
	drop := func(field string, value any, reason string) {
		c.Dropped = append(c.Dropped, droppedField{File: file, Doc: i, Kind: kind, Name: name, Field: field, Value: value, Reason: reason})
	}
	if st, ok := doc["status"]; ok {
		delete(doc, "status")
		drop("status", st, "the controller writes Rosetta's status")
	}
	doc["apiVersion"] = to.apiVersion
	js, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("%s: document %d: %w", file, i, err)
	}
	strict, err := kjson.UnmarshalStrict(js, to.newObject())
	if err != nil {
		return fmt.Errorf("%s: document %d: %s %s: %w", file, i, kind, name, err)
	}
	for _, e := range strict {
		m := unknownField.FindStringSubmatch(e.Error())
		if m == nil {
			return fmt.Errorf("%s: document %d: %s %s: %w", file, i, kind, name, e)
		}
		drop(m[1], removeField(doc, m[1]), "Rosetta's "+kind+" has no such field")
	}
	c.Objects = append(c.Objects, doc)
	c.Converted++
	return nil
}

func objectName(doc map[string]any) string {
	md, _ := doc["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	if ns, _ := md["namespace"].(string); ns != "" {
		return ns + "/" + name
	}
	return name
}

// fieldStep is one step of a field path: a key, or a key and an index
// ("routes[0]").
var fieldStep = regexp.MustCompile(`^(.*?)((?:\[\d+\])*)$`)

// removeField deletes the field at path ("spec.routes[0].foo") from doc
// and returns its value.
func removeField(doc map[string]any, path string) any {
	steps := strings.Split(path, ".")
	var cur any = doc
	for n, step := range steps {
		m := fieldStep.FindStringSubmatch(step)
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if n == len(steps)-1 && m[2] == "" {
			v := obj[m[1]]
			delete(obj, m[1])
			return v
		}
		cur = obj[m[1]]
		for _, idx := range strings.Split(strings.Trim(m[2], "[]"), "][") {
			if idx == "" {
				continue
			}
			list, ok := cur.([]any)
			k, err := strconv.Atoi(idx)
			if !ok || err != nil || k >= len(list) {
				return nil
			}
			cur = list[k]
		}
	}
	return nil
}

// writeYAML writes the objects as one YAML stream.
func (c *conversion) writeYAML(w io.Writer) error {
	for i, o := range c.Objects {
		y, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(y); err != nil {
			return err
		}
	}
	return nil
}
