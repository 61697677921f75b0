package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyFileKeepsTheLastGoodPoliciesWhole(t *testing.T) {
	good, err := os.ReadFile("../testdata/policies.yaml") // two valid policies, shared with the core's tests
	if err != nil {
		t.Fatal(err)
	}
	goodConfig := string(good)
	path := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(path, []byte(goodConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	pf, err := LoadPolicyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// One bad policy in an edit: the file is rejected as a whole, so the
	// good policy edited alongside it does not change either.
	bad := strings.Replace(goodConfig, "steps: [5, 20, 50]", "steps: [5, 20, 60]", 1) + "  broken:\n    steps: [0]\n    metrics: [{name: x, min: 1}]\n"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := pf.reload()
	if !changed || err == nil || !strings.Contains(err.Error(), "policies.broken.steps") {
		t.Fatalf("reload of a bad file: changed=%v err=%v, want a rejection naming policies.broken.steps", changed, err)
	}
	p, err := pf.Get("standard")
	if err != nil || p.MaxWeight != 50 {
		t.Fatalf("standard after a rejected edit: %v %v, want the old policy (max 50)", p, err)
	}
	if _, err := pf.Get("broken"); err == nil || !strings.Contains(err.Error(), "known: linear, standard") {
		t.Fatalf("unknown policy error %v, want one listing the known policies", err)
	}
	if changed, _ := pf.reload(); changed {
		t.Error("an unchanged file reported a change")
	}
	// Fixed: applied.
	if err := os.WriteFile(path, []byte(strings.Replace(goodConfig, "steps: [5, 20, 50]", "steps: [5, 20, 60]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := pf.reload(); !changed || err != nil || pf.Err() != nil {
		t.Fatalf("reload of a fixed file: changed=%v err=%v", changed, err)
	}
	if p, _ := pf.Get("standard"); p.MaxWeight != 60 {
		t.Fatalf("standard max weight %d after the fix, want 60", p.MaxWeight)
	}
}
