package rollout

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// references lists the fields under t that hold memory by reference
// (pointers, slices, maps, interfaces), by path.
func references(t reflect.Type, path string, out *[]string) {
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[metav1.Time]() {
			return // a value (its location pointer is shared by DeepCopy too)
		}
		for i := range t.NumField() {
			f := t.Field(i)
			references(f.Type, path+"."+f.Name, out)
		}
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		*out = append(*out, path)
	}
}

// copyEvidence and instants copy what they know of deeply: a field added
// to the evidence, or an instant added to the status, must be added to
// them too.
func TestStatusCopyKnowsEveryReference(t *testing.T) {
	var refs []string
	references(reflect.TypeFor[v1alpha1.Evidence](), "Evidence", &refs)
	if want := []string{"Evidence.Worse.LogLR", "Evidence.Worse.Pending", "Evidence.NoWorse.Pending", "Evidence.NoWorse.Before", "Evidence.Since"}; !slices.Equal(refs, want) {
		t.Errorf("the evidence holds %v by reference; copyEvidence copies %v", refs, want)
	}
	var times []string
	st := reflect.TypeFor[v1alpha1.FlightStatus]()
	for i := range st.NumField() {
		if st.Field(i).Type == reflect.TypeFor[*metav1.Time]() {
			times = append(times, st.Field(i).Name)
		}
	}
	if want := []string{"RevisionStartedAt", "StepStartedAt", "LastAnalysisAt", "CanaryTrafficEndedAt", "LastLookAt", "StageStartedAt", "LastTransitionTime"}; !slices.Equal(times, want) {
		t.Errorf("the status's instants are %v; instants has %v", times, want)
	}
}

// statusForDecision copies as DeepCopy does (but for the log and the
// outbox's messages), and the copy shares no evidence or instant with the
// status it was made from.
func TestStatusForDecisionCopiesDeeply(t *testing.T) {
	at := func(s int) *metav1.Time { t := metav1.NewTime(time.Unix(int64(s), 0)); return &t }
	look := func(n float64) *sequential.Look { return &sequential.Look{CanaryRequests: n, StableRequests: 2 * n} }
	in := v1alpha1.FlightStatus{
		Phase: v1alpha1.PhaseProgressing, Steps: []int32{10, 50}, Step: 1,
		RevisionStartedAt: at(1), StepStartedAt: at(2), LastLookAt: at(3), StageStartedAt: at(4),
		Hold: &v1alpha1.Hold{Reason: "r", Message: "m", Since: *at(5)},
		Evidence: []v1alpha1.Evidence{
			{Metric: "error-rate", Last: analysis.Reading{Canary: sequential.Counts{Requests: 9}},
				Worse:   sequential.Worse{LogLR: []float64{1, 2, 3}, Pending: look(1)},
				NoWorse: sequential.Promotion{LogE: 0.5, Pending: look(2), Before: look(3)}, Looks: 4, Since: at(6)},
			{Metric: "latency", Worse: sequential.Worse{LogLR: []float64{}}},
			{Metric: "latency-1s", Worse: sequential.Worse{LogLR: []float64{4}}, NoWorse: sequential.Promotion{Before: look(5)}},
		},
	}
	for _, in := range []v1alpha1.FlightStatus{in, {}, {Evidence: []v1alpha1.Evidence{}}} {
		want := *in.DeepCopy()
		got := statusForDecision(&in)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("statusForDecision differs from DeepCopy (-want +got):\n%s", diff)
		}
		if (want.Evidence == nil) != (got.Evidence == nil) {
			t.Fatalf("evidence nil %v, DeepCopy's %v", got.Evidence == nil, want.Evidence == nil)
		}
		for i := range got.Evidence {
			if (want.Evidence[i].Worse.LogLR == nil) != (got.Evidence[i].Worse.LogLR == nil) || cap(got.Evidence[i].Worse.LogLR) != len(got.Evidence[i].Worse.LogLR) {
				t.Fatalf("evidence %d: LogLR %#v (cap %d), DeepCopy's %#v", i, got.Evidence[i].Worse.LogLR, cap(got.Evidence[i].Worse.LogLR), want.Evidence[i].Worse.LogLR)
			}
		}
		// Writing to every part of the copy leaves the input as it was.
		for i := range got.Evidence {
			e := &got.Evidence[i]
			for j := range e.Worse.LogLR {
				e.Worse.LogLR[j] = -1
			}
			for _, l := range []*sequential.Look{e.Worse.Pending, e.NoWorse.Pending, e.NoWorse.Before} {
				if l != nil {
					l.CanaryBad = -1
				}
			}
			if e.Since != nil {
				e.Since.Time = time.Time{}
			}
		}
		for _, t := range instants(&got) {
			if *t != nil {
				(*t).Time = time.Time{}
			}
		}
		if diff := cmp.Diff(want, in); diff != "" {
			t.Fatalf("writing to the copy changed the input (-want +got):\n%s", diff)
		}
	}
}
