//go:build e2e

package apis_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

var suite sandbox.Suite

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// stored lists the Flights as fledge stored them before its API types were
// generated (see rollout/apis/fledge/v1alpha1/testdata/stored/README.md).
func stored(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("../../rollout/apis/fledge/v1alpha1/testdata/stored/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no stored Flights found: %v", err)
	}
	return paths
}

// TestTheCRDAcceptsStoredFlightsWhole writes each stored Flight into the
// API server under the generated CRD and reads it back: accepted, with no
// field pruned or changed (the API server drops silently what its schema
// does not list), through the dynamic client and the typed client alike;
// and the typed client's own write of it is accepted too.
func TestTheCRDAcceptsStoredFlightsWhole(t *testing.T) {
	sb := suite.Get(t)
	ctx := context.Background()
	if err := sandbox.ApplyCRDs(ctx, sb.Dynamic, "../../deploy/crds/flights.fledge.dev.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, path := range stored(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			ns := sb.Namespace(t) // the stored Flights share names
			raw := sb.Dynamic.Resource(v1alpha1.FlightResource).Namespace(ns)
			typed := sb.Fledge.FledgeV1alpha1().Flights(ns)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "fledge.dev/v1alpha1", "kind": "Flight",
				"metadata": map[string]any{"name": want["metadata"].(map[string]any)["name"]},
				"spec":     want["spec"],
			}}
			created, err := raw.Create(ctx, obj, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			created.Object["status"] = want["status"]
			if _, err := raw.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("the API server refused the stored status: %v", err)
			}

			got, err := raw.Get(ctx, created.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"spec", "status"} {
				if diff := cmp.Diff(want[field], asJSON(t, got.Object[field])); diff != "" {
					t.Errorf("%s read back through the dynamic client differs (-stored +read):\n%s", field, diff)
				}
			}

			f, err := typed.Get(ctx, created.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("typed get: %v", err)
			}
			if diff := cmp.Diff(want["status"], asJSON(t, f.Status)); diff != "" {
				t.Errorf("status read through the typed client differs (-stored +typed):\n%s", diff)
			}
			f.Status.Message += " (written again by the typed client)"
			if _, err := typed.UpdateStatus(ctx, f, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("the API server refused the typed client's write of it: %v", err)
			}
		})
	}
}

// asJSON is v as JSON carries it (numbers as float64, as in the stored
// files), so that values compare whatever Go types they were read into.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
