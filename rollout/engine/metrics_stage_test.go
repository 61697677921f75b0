package engine

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

func TestTheStageMetricSaysWhereAFlightStandsInItsStrategy(t *testing.T) {
	m := NewMetrics(prometheus.NewPedanticRegistry())
	bg := &v1alpha1.BlueGreenPlan{}
	preview := []v1alpha1.CohortStage{{Name: "preview"}}
	for _, tc := range []struct {
		st   v1alpha1.FlightStatus
		want string
	}{
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseIdle}, "none"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: -1}, "starting"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 0, Cohorts: []v1alpha1.CohortStage{{Name: "beta"}}}, "cohort"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 0, Cohorts: []v1alpha1.CohortStage{{Name: "mirror", Mirror: 20}, {Name: "beta"}}}, "mirror"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 1, Cohorts: []v1alpha1.CohortStage{{Name: "mirror", Mirror: 20}, {Name: "beta"}}}, "cohort"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhasePaused, Step: 1, Cohorts: []v1alpha1.CohortStage{{Name: "beta"}}}, "weighted"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 0, Cohorts: preview, BlueGreen: bg}, "preview"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 1, Cohorts: preview, BlueGreen: bg}, "switched"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhasePromoting, Step: 1, BlueGreen: bg}, "promoting"},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseRollingBack, Step: -1}, "rolling-back"},
	} {
		// One Flight going through them all: one series each time, the
		// stage it is in, and the phase it is in.
		f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}, Status: tc.st}
		m.observe(f, nil)
		if n := testutil.CollectAndCount(m.stage); n != 1 {
			t.Errorf("%s at step %d: %d stage series, want 1", tc.st.Phase, tc.st.Step, n)
		}
		if got := testutil.ToFloat64(m.stage.WithLabelValues("shop", "cart", tc.want)); got != 1 {
			t.Errorf("%s at step %d: stage %q = %g, want 1", tc.st.Phase, tc.st.Step, tc.want, got)
		}
		if n := testutil.CollectAndCount(m.phase); n != 1 {
			t.Errorf("%s at step %d: %d phase series, want 1", tc.st.Phase, tc.st.Step, n)
		}
		if got := testutil.ToFloat64(m.phase.WithLabelValues("shop", "cart", string(tc.st.Phase))); got != 1 {
			t.Errorf("%s at step %d: phase %q = %g, want 1", tc.st.Phase, tc.st.Step, tc.st.Phase, got)
		}
	}
	m.forget("shop", "cart")
	if n := testutil.CollectAndCount(m.stage) + testutil.CollectAndCount(m.phase); n != 0 {
		t.Errorf("%d stage and phase series left after the Flight was forgotten", n)
	}
}

func TestTheBaselineWeightIsTheCanarysWhileAFreshBaselineServes(t *testing.T) {
	for _, tc := range []struct {
		st   v1alpha1.FlightStatus
		want float64
	}{
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 0, CanaryWeight: 20, Baseline: "fresh"}, 20},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 0, CanaryWeight: 20}, 0},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: -1, Baseline: "fresh"}, 0},
		{v1alpha1.FlightStatus{Phase: v1alpha1.PhasePromoting, Step: 1, CanaryWeight: 100, Baseline: "fresh"}, 0},
	} {
		reg := prometheus.NewPedanticRegistry()
		m := NewMetrics(reg)
		m.observe(&v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}, Status: tc.st}, nil)
		if got := testutil.ToFloat64(m.baseline.WithLabelValues("shop", "cart")); got != tc.want {
			t.Errorf("%s step %d at %d%% (baseline %q): baseline weight %g, want %g", tc.st.Phase, tc.st.Step, tc.st.CanaryWeight, tc.st.Baseline, got, tc.want)
		}
		m.forget("shop", "cart")
		if n := testutil.CollectAndCount(m.baseline); n != 0 {
			t.Errorf("%d baseline series left after the Flight was forgotten", n)
		}
	}
}

func TestTheWatchStateIsExportedWhileAFlightHasOne(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseRolledBack, Step: -1, Watch: &v1alpha1.Watch{State: v1alpha1.WatchWatching}}}
	m.observe(f, nil)
	f.Status.Watch.State = v1alpha1.WatchReverted
	m.observe(f, nil)
	if n := testutil.CollectAndCount(m.watch); n != 1 {
		t.Errorf("%d watch series, want 1", n)
	}
	if got := testutil.ToFloat64(m.watch.WithLabelValues("shop", "cart", string(v1alpha1.WatchReverted))); got != 1 {
		t.Errorf("state Reverted = %g, want 1", got)
	}
	if got := testutil.ToFloat64(m.reverted.WithLabelValues("shop", "cart")); got != 1 {
		t.Errorf("fledge_watch_reverted %g while reverted, want 1", got)
	}
	f.Status.Watch = nil
	m.observe(f, nil)
	if n := testutil.CollectAndCount(m.watch); n != 0 {
		t.Errorf("%d watch series left for a Flight without a watch", n)
	}
	if got := testutil.ToFloat64(m.reverted.WithLabelValues("shop", "cart")); got != 0 {
		t.Errorf("fledge_watch_reverted %g without a watch, want 0 (present, so that alerts see it)", got)
	}
}
