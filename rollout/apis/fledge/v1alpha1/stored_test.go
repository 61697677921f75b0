package v1alpha1

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStoredFlightsDecodeWhole reads the Flights fledge stored before its
// API types were generated (testdata/stored, see its README) and checks
// that today's types keep every field: decoded and encoded again, the spec
// and status are the same JSON. A field renamed, retyped or dropped from
// the types fails here; e2e/apis checks the same Flights against the
// generated CRD in a real API server.
func TestStoredFlightsDecodeWhole(t *testing.T) {
	paths, err := filepath.Glob("testdata/stored/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no stored Flights: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			var f Flight
			if err := json.Unmarshal(data, &f); err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := json.Marshal(&f)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"spec", "status"} {
				if want[field] == nil {
					t.Fatalf("the stored Flight has no %s", field)
				}
				if diff := cmp.Diff(want[field], got[field]); diff != "" {
					t.Errorf("%s differs after a round trip through the types (-stored +decoded):\n%s", field, diff)
				}
			}
		})
	}
}
