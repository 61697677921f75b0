package v1alpha1

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestCRDSchemaHasEveryStatusField: the API server prunes fields its
// schema does not list, silently, so a status field missing from
// deploy/crds would be lost on every write (and a hook called again on
// every look).
func TestCRDSchemaHasEveryStatusField(t *testing.T) {
	data, err := os.ReadFile("../../../../deploy/crds/flights.fledge.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema crdSchema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	checkSchema(t, "status", reflect.TypeOf(FlightStatus{}), root.Properties["status"])
	checkSchema(t, "spec", reflect.TypeOf(FlightSpec{}), root.Properties["spec"])
}

type crdSchema struct {
	Type       string               `json:"type"`
	Properties map[string]crdSchema `json:"properties"`
	Items      *crdSchema           `json:"items"`
	Preserve   bool                 `json:"x-kubernetes-preserve-unknown-fields"`
}

var leafTypes = map[reflect.Type]bool{reflect.TypeOf(metav1.Time{}): true, reflect.TypeOf(time.Time{}): true, reflect.TypeOf(metav1.Condition{}): true}

func checkSchema(t *testing.T, path string, typ reflect.Type, s crdSchema) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if s.Preserve || leafTypes[typ] {
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		if s.Items == nil {
			t.Errorf("%s: the crdSchema has no items", path)
			return
		}
		checkSchema(t, path+"[]", typ.Elem(), *s.Items)
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			sub, ok := s.Properties[name]
			if !ok {
				t.Errorf("%s.%s: not in the CRD's crdSchema: the API server would drop it", path, name)
				continue
			}
			checkSchema(t, path+"."+name, f.Type, sub)
		}
	}
}
