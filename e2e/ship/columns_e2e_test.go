//go:build e2e

package ship_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// flightColumns is what `kubectl get flights` shows: the API server's
// Table of Flights, from the CRD's printer columns.
var flightColumns = []string{"Name", "Phase", "Step", "Weight", "Canary", "Verdict", "Since", "Age"}

// checkFlightColumns asks the API server for Flights as kubectl does (a
// Table) and checks the row of name against its Flight: the step as
// "2/4", the canary's image, the latest verdict and the time since the
// last transition.
func checkFlightColumns(t *testing.T, sb *sandbox.Sandbox, ns, name string) {
	t.Helper()
	ctx := context.Background()
	raw, err := sb.Fledge.FledgeV1alpha1().RESTClient().Get().Namespace(ns).Resource("flights").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Raw()
	if err != nil {
		t.Fatalf("kubectl get flights: %v", err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	if !slices.Equal(names, flightColumns) {
		t.Errorf("kubectl get flights shows columns %v, want %v", names, flightColumns)
	}
	f, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := f.Status.Decisions[len(f.Status.Decisions)-1]
	want := map[string]string{
		"Name": name, "Phase": string(f.Status.Phase), "Step": f.Status.Progress, "Weight": fmt.Sprint(f.Status.CanaryWeight),
		"Canary": f.Status.CanaryImages[0].Image, "Verdict": string(last.Verdict),
	}
	for _, row := range table.Rows {
		cells := map[string]string{}
		for i, c := range table.ColumnDefinitions {
			if i < len(row.Cells) {
				cells[c.Name] = fmt.Sprint(row.Cells[i])
			}
		}
		if cells["Name"] != name {
			continue
		}
		for col, v := range want {
			if cells[col] != v {
				t.Errorf("kubectl get flights: %s is %q, want %q", col, cells[col], v)
			}
		}
		if !regexp.MustCompile(`^[1-9][0-9]*/[1-9][0-9]*$`).MatchString(cells["Step"]) {
			t.Errorf("kubectl get flights: Step is %q, want it as 2/4", cells["Step"])
		}
		if !regexp.MustCompile(`^[0-9]+[smhd]`).MatchString(cells["Since"]) {
			t.Errorf("kubectl get flights: Since is %q, want a time since the last transition", cells["Since"])
		}
		t.Logf("kubectl get flights: %v", cells)
		return
	}
	t.Errorf("kubectl get flights has no row %s", name)
}
