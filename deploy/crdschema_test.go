package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// crdSchema is one node of a CRD's structural OpenAPI v3 schema: the subset
// of OpenAPI that Kubernetes accepts in apiextensions.k8s.io/v1 CRDs. The
// schema file is decoded strictly into it, so a keyword this checker does not
// know (and so would silently ignore) fails loading instead.
type crdSchema struct {
	Type                 string                `json:"type,omitempty"`
	Format               string                `json:"format,omitempty"`
	Description          string                `json:"description,omitempty"`
	Title                string                `json:"title,omitempty"`
	Properties           map[string]*crdSchema `json:"properties,omitempty"`
	Required             []string              `json:"required,omitempty"`
	Items                *crdSchema            `json:"items,omitempty"`
	AdditionalProperties *crdSchema            `json:"additionalProperties,omitempty"`
	AnyOf                []*crdSchema          `json:"anyOf,omitempty"`
	Enum                 []any                 `json:"enum,omitempty"`
	Default              any                   `json:"default,omitempty"`
	Pattern              string                `json:"pattern,omitempty"`
	Minimum              *float64              `json:"minimum,omitempty"`
	Maximum              *float64              `json:"maximum,omitempty"`
	ExclusiveMinimum     bool                  `json:"exclusiveMinimum,omitempty"`
	ExclusiveMaximum     bool                  `json:"exclusiveMaximum,omitempty"`
	MinLength            *int64                `json:"minLength,omitempty"`
	MaxLength            *int64                `json:"maxLength,omitempty"`
	MinItems             *int64                `json:"minItems,omitempty"`
	MaxItems             *int64                `json:"maxItems,omitempty"`
	MinProperties        *int64                `json:"minProperties,omitempty"`
	MaxProperties        *int64                `json:"maxProperties,omitempty"`
	Nullable             bool                  `json:"nullable,omitempty"`

	XIntOrString           bool      `json:"x-kubernetes-int-or-string,omitempty"`
	XPreserveUnknownFields *bool     `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
	XEmbeddedResource      bool      `json:"x-kubernetes-embedded-resource,omitempty"`
	XListType              string    `json:"x-kubernetes-list-type,omitempty"`
	XListMapKeys           []string  `json:"x-kubernetes-list-map-keys,omitempty"`
	XMapType               string    `json:"x-kubernetes-map-type,omitempty"`
	XValidations           []celRule `json:"x-kubernetes-validations,omitempty"`

	pattern *regexp.Regexp
}

// celRule is an x-kubernetes-validations entry.
type celRule struct {
	Rule              string `json:"rule"`
	Message           string `json:"message,omitempty"`
	MessageExpression string `json:"messageExpression,omitempty"`
	Reason            string `json:"reason,omitempty"`
	FieldPath         string `json:"fieldPath,omitempty"`
	OptionalOldSelf   *bool  `json:"optionalOldSelf,omitempty"`
}

// celRules holds Go equivalents of the CEL rules found in the CRDs under
// testdata, keyed by the rule text. A CRD with a rule that is not here fails
// loading: a new rule must be translated, not skipped.
var celRules = map[string]func(self any) error{
	// keda.sh ScaledObject .spec
	`!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)`: func(self any) error {
		spec, _ := self.(map[string]any)
		minRaw, ok := spec["minReplicaCount"]
		if !ok {
			return nil
		}
		maxRaw, ok := spec["maxReplicaCount"]
		if !ok {
			maxRaw = json.Number("100")
		}
		minV, err1 := toInt64(minRaw)
		maxV, err2 := toInt64(maxRaw)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if minV > maxV {
			return fmt.Errorf("minReplicaCount %d > maxReplicaCount %d", minV, maxV)
		}
		return nil
	},
}

func toInt64(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%v is not a number", v)
	}
	return n.Int64()
}

// crdValidator checks custom resources of one kind against the schema of a
// served version of its CRD, rejecting unknown fields as the API server does
// with strict field validation (kubectl's default).
type crdValidator struct {
	group    string
	kind     string
	versions map[string]*crdSchema // served versions by name
}

// loadCRD reads a CustomResourceDefinition YAML file.
func loadCRD(path string) (*crdValidator, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var crd struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(js, &crd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if crd.APIVersion != "apiextensions.k8s.io/v1" || crd.Kind != "CustomResourceDefinition" {
		return nil, fmt.Errorf("%s: not an apiextensions.k8s.io/v1 CustomResourceDefinition", path)
	}
	v := &crdValidator{group: crd.Spec.Group, kind: crd.Spec.Names.Kind, versions: map[string]*crdSchema{}}
	for _, ver := range crd.Spec.Versions {
		if !ver.Served {
			continue
		}
		s := new(crdSchema)
		if err := decodeStrict(ver.Schema.OpenAPIV3Schema, s); err != nil {
			return nil, fmt.Errorf("%s: version %s: schema uses something this checker does not implement: %w", path, ver.Name, err)
		}
		if err := s.prepare("", true); err != nil {
			return nil, fmt.Errorf("%s: version %s: %w", path, ver.Name, err)
		}
		v.versions[ver.Name] = s
	}
	if len(v.versions) == 0 {
		return nil, fmt.Errorf("%s: no served version", path)
	}
	return v, nil
}

// prepare compiles patterns and checks that every CEL rule has a Go
// equivalent and every node is structural.
func (s *crdSchema) prepare(path string, root bool) error {
	var errs []error
	if s.Pattern != "" {
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: pattern: %w", path, err))
		}
		s.pattern = re
	}
	for _, r := range s.XValidations {
		if _, ok := celRules[r.Rule]; !ok {
			errs = append(errs, fmt.Errorf("%s: CEL rule without a Go equivalent in celRules: %q", path, r.Rule))
		}
	}
	if s.Type == "" && !s.XIntOrString && !s.preserveUnknown() && !root {
		errs = append(errs, fmt.Errorf("%s: schema node without a type", path))
	}
	for name, p := range s.Properties {
		errs = append(errs, p.prepare(path+"."+name, false))
	}
	if s.Items != nil {
		errs = append(errs, s.Items.prepare(path+"[]", false))
	}
	if s.AdditionalProperties != nil {
		errs = append(errs, s.AdditionalProperties.prepare(path+"{}", false))
	}
	for _, a := range s.AnyOf {
		// anyOf branches in a structural schema carry only value checks.
		if len(a.Properties) > 0 || a.Items != nil || a.AdditionalProperties != nil {
			errs = append(errs, fmt.Errorf("%s: anyOf branch with structure is not supported", path))
		}
		if a.Type == "" {
			continue
		}
		errs = append(errs, a.prepare(path+"(anyOf)", false))
	}
	return errors.Join(errs...)
}

func (s *crdSchema) preserveUnknown() bool {
	return s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields
}

// validate checks one object (JSON) of the CRD's kind.
func (v *crdValidator) validate(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return err
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok || group != v.group || kind != v.kind {
		return fmt.Errorf("%s %s is not a %s/%s", apiVersion, kind, v.group, v.kind)
	}
	s, ok := v.versions[version]
	if !ok {
		return fmt.Errorf("%s: version %q is not served by the CRD", kind, version)
	}
	var errs []error
	// The API server validates metadata as ObjectMeta, not by the CRD schema.
	if md, ok := obj["metadata"]; ok {
		b, err := json.Marshal(md)
		if err == nil {
			err = decodeStrict(b, new(metav1.ObjectMeta))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata: %w", err))
		}
	}
	rest := make(map[string]any, len(obj))
	for k, val := range obj {
		if k != "metadata" {
			rest[k] = val
		}
	}
	rootSchema := *s
	rootSchema.Required = slices.DeleteFunc(slices.Clone(s.Required), func(r string) bool { return r == "metadata" })
	errs = append(errs, rootSchema.check("", rest)...)
	return errors.Join(errs...)
}

// check validates value v at path against s and returns every violation.
func (s *crdSchema) check(path string, v any) []error {
	fail := func(format string, args ...any) []error {
		return []error{fmt.Errorf("%s: %s", displayPath(path), fmt.Sprintf(format, args...))}
	}
	if v == nil {
		if s.Nullable {
			return nil
		}
		return fail("null is not allowed")
	}
	var errs []error
	for _, r := range s.XValidations {
		if err := celRules[r.Rule](v); err != nil {
			msg := r.Message
			if msg == "" {
				msg = r.Rule
			}
			errs = append(errs, fmt.Errorf("%s: %s (%v)", displayPath(path), msg, err))
		}
	}
	if len(s.Enum) > 0 && !slices.ContainsFunc(s.Enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		errs = append(errs, fail("%v is not one of %v", v, s.Enum)...)
	}
	if len(s.AnyOf) > 0 {
		matched := false
		for _, a := range s.AnyOf {
			if len(a.check(path, v)) == 0 {
				matched = true
				break
			}
		}
		if !matched {
			errs = append(errs, fail("%v matches none of the allowed forms", v)...)
		}
	}
	if s.XIntOrString {
		switch x := v.(type) {
		case json.Number:
			if _, err := x.Int64(); err != nil {
				errs = append(errs, fail("%v is neither an integer nor a string", v)...)
			}
		case string:
			if s.pattern != nil && !s.pattern.MatchString(x) {
				errs = append(errs, fail("%q does not match %s", x, s.Pattern)...)
			}
		default:
			errs = append(errs, fail("%v is neither an integer nor a string", v)...)
		}
		return errs
	}

	switch s.Type {
	case "":
		// Only x-kubernetes-preserve-unknown-fields nodes have no type.
		return errs
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fail("want an object, got %T", v)...)
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				errs = append(errs, fail("required field %q is missing", r)...)
			}
		}
		if s.MinProperties != nil && int64(len(m)) < *s.MinProperties {
			errs = append(errs, fail("fewer than %d fields", *s.MinProperties)...)
		}
		if s.MaxProperties != nil && int64(len(m)) > *s.MaxProperties {
			errs = append(errs, fail("more than %d fields", *s.MaxProperties)...)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := path + "." + k
			switch {
			case s.Properties[k] != nil:
				errs = append(errs, s.Properties[k].check(child, m[k])...)
			case s.AdditionalProperties != nil:
				errs = append(errs, s.AdditionalProperties.check(child, m[k])...)
			case s.preserveUnknown():
			default:
				errs = append(errs, fmt.Errorf("%s: unknown field %q", displayPath(path), k))
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, fail("want an array, got %T", v)...)
		}
		if s.MinItems != nil && int64(len(a)) < *s.MinItems {
			errs = append(errs, fail("fewer than %d items", *s.MinItems)...)
		}
		if s.MaxItems != nil && int64(len(a)) > *s.MaxItems {
			errs = append(errs, fail("more than %d items", *s.MaxItems)...)
		}
		if s.Items != nil {
			for i, item := range a {
				errs = append(errs, s.Items.check(fmt.Sprintf("%s[%d]", path, i), item)...)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return append(errs, fail("want a string, got %T %v", v, v)...)
		}
		n := int64(len([]rune(str)))
		if s.MinLength != nil && n < *s.MinLength {
			errs = append(errs, fail("shorter than %d characters", *s.MinLength)...)
		}
		if s.MaxLength != nil && n > *s.MaxLength {
			errs = append(errs, fail("longer than %d characters", *s.MaxLength)...)
		}
		if s.pattern != nil && !s.pattern.MatchString(str) {
			errs = append(errs, fail("%q does not match %s", str, s.Pattern)...)
		}
	case "integer", "number":
		num, ok := v.(json.Number)
		if !ok {
			return append(errs, fail("want a %s, got %T %v", s.Type, v, v)...)
		}
		f, err := num.Float64()
		if err != nil {
			return append(errs, fail("%v: %v", v, err)...)
		}
		if s.Type == "integer" {
			i, err := num.Int64()
			if err != nil {
				return append(errs, fail("%v is not an integer", v)...)
			}
			if s.Format == "int32" && (i < math.MinInt32 || i > math.MaxInt32) {
				errs = append(errs, fail("%d does not fit int32", i)...)
			}
		}
		if s.Minimum != nil && (f < *s.Minimum || s.ExclusiveMinimum && f == *s.Minimum) {
			errs = append(errs, fail("%v is below the minimum %v", v, *s.Minimum)...)
		}
		if s.Maximum != nil && (f > *s.Maximum || s.ExclusiveMaximum && f == *s.Maximum) {
			errs = append(errs, fail("%v is above the maximum %v", v, *s.Maximum)...)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return append(errs, fail("want a boolean, got %T %v", v, v)...)
		}
	default:
		return append(errs, fail("schema type %q is not supported", s.Type)...)
	}
	return errs
}

func displayPath(p string) string {
	if p == "" {
		return "<root>"
	}
	return strings.TrimPrefix(p, ".")
}
