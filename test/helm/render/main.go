// Command render renders a Helm chart the way `helm template` does, for the
// chart tests on machines without helm: Go's text/template with Sprig (the
// engine and function library Helm uses) plus Helm's own functions (include,
// tpl, required, fail, toYaml, fromYaml, toJson, fromJson, lookup), with
// .Values coalesced from the chart's values.yaml, -f files and --set, and
// .Release, .Chart, .Capabilities, .Template.
//
//	render --chart DIR [-f FILE]... [--set K=V]... [--set-string K=V]...
//	       [--release NAME] [--namespace NS] [--kube-version v1.30.0]
//	       [--api-versions GROUP/VERSION]... [--existing FILE] [--upgrade]
//	       [--values-only]   (only the coalesced values: for schema checks)
//
// --existing FILE: a YAML stream of objects that `lookup` finds (as on a
// cluster with a previous release); without it lookup returns an empty map,
// as `helm template` does.
//
// Prints JSON: {"files": {"CHART/templates/x.yaml": "..."}, "notes": "...",
// "values": {...}}. A template error exits 1 with Helm's kind of message on
// stderr. Not covered: subcharts and dependencies, .Files, schema
// validation (the tests run it with ajv), --set's list-index syntax a[0].
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// APIVersions is .Capabilities.APIVersions: Has "group/version" or "group/version/Kind".
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type options struct {
	chart, release, namespace, kubeVersion, existing string
	files, sets, setStrings, apiVersions             multi
	upgrade, valuesOnly                              bool
}

func main() {
	o := options{release: "release-name", namespace: "default", kubeVersion: "v1.30.0"}
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		next := func() string {
			if i+1 >= len(args) {
				die("%s needs a value", args[i])
			}
			i++
			return args[i]
		}
		switch args[i] {
		case "--chart":
			o.chart = next()
		case "-f", "--values":
			o.files.Set(next())
		case "--set":
			o.sets.Set(next())
		case "--set-string":
			o.setStrings.Set(next())
		case "--release":
			o.release = next()
		case "--namespace", "-n":
			o.namespace = next()
		case "--kube-version":
			o.kubeVersion = next()
		case "--api-versions":
			o.apiVersions.Set(next())
		case "--existing":
			o.existing = next()
		case "--upgrade":
			o.upgrade = true
		case "--values-only":
			o.valuesOnly = true
		default:
			die("unknown argument %q", args[i])
		}
	}
	if o.chart == "" {
		die("--chart DIR is required")
	}
	out, err := render(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		die("%v", err)
	}
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", a...)
	os.Exit(2)
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// coalesce merges src over dst as Helm does: maps merge key by key, anything
// else replaces, and a null in src deletes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sv, sok := v.(map[string]interface{})
		dv, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = coalesce(dv, sv)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// setValue applies one --set a.b.c=v (asString: --set-string). Values are
// typed as Helm's strvals types them: null, true/false, int64, {a,b} lists.
func setValue(vals map[string]interface{}, expr string, asString bool) error {
	eq := strings.Index(expr, "=")
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected KEY=VALUE", expr)
	}
	var path []string
	cur := ""
	key := expr[:eq]
	for i := 0; i < len(key); i++ {
		if key[i] == '\\' && i+1 < len(key) {
			cur += string(key[i+1])
			i++
		} else if key[i] == '.' {
			path = append(path, cur)
			cur = ""
		} else {
			cur += string(key[i])
		}
	}
	path = append(path, cur)
	raw := expr[eq+1:]
	var v interface{} = raw
	if !asString {
		v = typed(raw)
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			var list []interface{}
			for _, item := range strings.Split(raw[1:len(raw)-1], ",") {
				if item != "" {
					list = append(list, typed(item))
				}
			}
			v = list
		}
	}
	m := vals
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, path[len(path)-1])
	} else {
		m[path[len(path)-1]] = v
	}
	return nil
}

func typed(s string) interface{} {
	switch s {
	case "null":
		return nil
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && (s == "0" || !strings.HasPrefix(s, "0")) {
		return n
	}
	return s
}

type result struct {
	Files  map[string]string      `json:"files"`
	Notes  string                 `json:"notes"`
	Values map[string]interface{} `json:"values"`
}

func render(o options) (*result, error) {
	chartMeta, err := readYAMLMap(filepath.Join(o.chart, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chartName, _ := chartMeta["name"].(string)
	// .Chart has Helm's Go field names (Name, Version, AppVersion, ...)
	chart := map[string]interface{}{}
	for k, v := range chartMeta {
		if k == "apiVersion" {
			chart["APIVersion"] = v
		} else {
			chart[strings.ToUpper(k[:1])+k[1:]] = v
		}
	}

	values, err := readYAMLMap(filepath.Join(o.chart, "values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range o.files {
		m, err := readYAMLMap(f)
		if err != nil {
			return nil, err
		}
		values = coalesce(values, m)
	}
	for _, s := range o.sets {
		if err := setValue(values, s, false); err != nil {
			return nil, err
		}
	}
	for _, s := range o.setStrings {
		if err := setValue(values, s, true); err != nil {
			return nil, err
		}
	}

	if o.valuesOnly {
		return &result{Files: map[string]string{}, Values: values}, nil
	}
	existing, err := readExisting(o.existing)
	if err != nil {
		return nil, err
	}

	kv := strings.TrimPrefix(o.kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("--kube-version %q: expected vMAJOR.MINOR.PATCH", o.kubeVersion)
	}
	apis := APIVersions{"v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"}
	apis = append(apis, o.apiVersions...)
	caps := map[string]interface{}{
		"KubeVersion": map[string]interface{}{
			"Version": "v" + kv, "GitVersion": "v" + kv, "Major": parts[0], "Minor": parts[1],
		},
		"APIVersions": apis,
		"HelmVersion": map[string]interface{}{"Version": "v3.15.0"},
	}
	revision := 1
	if o.upgrade {
		revision = 2
	}
	release := map[string]interface{}{
		"Name": o.release, "Namespace": o.namespace, "Service": "Helm",
		"IsInstall": !o.upgrade, "IsUpgrade": o.upgrade, "Revision": revision,
	}

	// Every file under templates/ joins one template set (partials too), named
	// CHART/templates/FILE as in Helm, so include reaches every define.
	root := template.New("gotpl")
	var names []string
	tdir := filepath.Join(o.chart, "templates")
	err = filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(o.chart, p)
		names = append(names, filepath.ToSlash(filepath.Join(chartName, rel)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)

	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	for k, v := range helmFuncs(root, existing) {
		funcs[k] = v
	}
	root.Funcs(funcs).Option("missingkey=zero")
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(o.chart, strings.TrimPrefix(n, chartName+"/")))
		if err != nil {
			return nil, err
		}
		if _, err := root.New(n).Parse(string(b)); err != nil {
			return nil, fmt.Errorf("parse error in %s: %v", n, err)
		}
	}

	res := &result{Files: map[string]string{}, Values: values}
	for _, n := range names {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{
			"Values": values, "Release": release, "Chart": chart, "Capabilities": caps,
			"Template": map[string]interface{}{"Name": n, "BasePath": chartName + "/templates"},
			"Files":    map[string]interface{}{},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return nil, cleanError(err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			res.Notes = out
		} else {
			res.Files[n] = out
		}
	}
	return res, nil
}

// cleanError shortens Go's "template: X: executing ... error calling required: MSG"
// to Helm's "execution error at (X): MSG".
func cleanError(err error) error {
	s := err.Error()
	for _, marker := range []string{"error calling required: ", "error calling fail: "} {
		if i := strings.Index(s, marker); i >= 0 {
			where := strings.TrimPrefix(s, "template: ")
			if j := strings.Index(where, ": executing"); j >= 0 {
				where = where[:j]
			}
			return fmt.Errorf("execution error at (%s): %s", where, s[i+len(marker):])
		}
	}
	return err
}

func readExisting(path string) ([]map[string]interface{}, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []map[string]interface{}
	for _, doc := range strings.Split(string(b), "\n---") {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if len(m) > 0 {
			objs = append(objs, m)
		}
	}
	return objs, nil
}

func helmFuncs(root *template.Template, existing []map[string]interface{}) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var buf bytes.Buffer
			if err := root.ExecuteTemplate(&buf, name, data); err != nil {
				return "", err
			}
			return buf.String(), nil
		},
		"tpl": func(text string, data interface{}) (string, error) {
			t, err := root.Clone()
			if err != nil {
				return "", err
			}
			t, err = t.New("tpl").Parse(text)
			if err != nil {
				return "", err
			}
			var buf bytes.Buffer
			if err := t.Execute(&buf, data); err != nil {
				return "", err
			}
			return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
		},
		"required": func(msg string, v interface{}) (interface{}, error) {
			if v == nil {
				return v, fmt.Errorf("%s", msg)
			}
			if s, ok := v.(string); ok && s == "" {
				return v, fmt.Errorf("%s", msg)
			}
			return v, nil
		},
		"fail": func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) },
		"toYaml": func(v interface{}) string {
			b, err := yaml.Marshal(v)
			if err != nil {
				return ""
			}
			return strings.TrimSuffix(string(b), "\n")
		},
		"mustToYaml": func(v interface{}) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"fromYaml": func(s string) map[string]interface{} {
			m := map[string]interface{}{}
			if err := yaml.Unmarshal([]byte(s), &m); err != nil {
				m["Error"] = err.Error()
			}
			return m
		},
		"fromYamlArray": func(s string) []interface{} {
			var a []interface{}
			if err := yaml.Unmarshal([]byte(s), &a); err != nil {
				a = []interface{}{err.Error()}
			}
			return a
		},
		"toJson": func(v interface{}) string {
			b, err := json.Marshal(v)
			if err != nil {
				return ""
			}
			return string(b)
		},
		"mustToJson": func(v interface{}) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"fromJson": func(s string) map[string]interface{} {
			m := map[string]interface{}{}
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				m["Error"] = err.Error()
			}
			return m
		},
		// lookup finds objects of --existing; like `helm template`, an empty map otherwise.
		"lookup": func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
			var items []interface{}
			for _, o := range existing {
				md, _ := o["metadata"].(map[string]interface{})
				ns, _ := md["namespace"].(string)
				if o["apiVersion"] != apiVersion || o["kind"] != kind || (namespace != "" && ns != namespace) {
					continue
				}
				if name == "" {
					items = append(items, o)
				} else if md["name"] == name {
					return o, nil
				}
			}
			if name == "" && len(items) > 0 {
				return map[string]interface{}{"apiVersion": apiVersion, "kind": kind + "List", "items": items}, nil
			}
			return map[string]interface{}{}, nil
		},
	}
}
