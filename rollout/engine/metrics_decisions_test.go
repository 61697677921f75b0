package engine

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// flightWith is the Flight shop/cart with the given decision log and hold.
func flightWith(hold *v1alpha1.Hold, log ...v1alpha1.DecisionRecord) *v1alpha1.Flight {
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
	f.Status.Phase = v1alpha1.PhaseProgressing
	f.Status.Decisions, f.Status.Hold = log, hold
	return f
}

func decisionAt(at time.Time, v v1alpha1.Verdict, step, repeats int32) v1alpha1.DecisionRecord {
	return v1alpha1.DecisionRecord{At: metav1.NewTime(at), Revision: "r2", Step: step, Verdict: v, Repeats: repeats}
}

func decisionCounts(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, v := range []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictHold, v1alpha1.VerdictRollback} {
		c, err := m.flights.decisions.GetMetricWithLabelValues("shop", "cart", string(v))
		if err != nil {
			t.Fatal(err)
		}
		if n := testutil.ToFloat64(c); n != 0 {
			out[string(v)] = n
		}
	}
	return out
}

func TestDecisionsAreCountedOnceEachAsTheLogGrows(t *testing.T) {
	m := NewMetrics(nil)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	start, advance := decisionAt(t0, v1alpha1.VerdictStart, 0, 0), decisionAt(t0.Add(10*time.Second), v1alpha1.VerdictAdvance, 1, 0)

	m.observe(flightWith(nil, start, advance), nil)
	m.observe(flightWith(nil, start, advance), nil) // the same log again: nothing new
	if got, want := decisionCounts(t, m), map[string]float64{"start": 1, "advance": 1}; !maps.Equal(got, want) {
		t.Fatalf("after start and advance, seen twice: %v, want %v", got, want)
	}

	// A hold in the same second as the advance (times are kept to the
	// second), then the same hold again a round later: one record
	// rewritten with a later time and Repeats 1. Each round counts.
	hold := decisionAt(t0.Add(10*time.Second), v1alpha1.VerdictHold, 1, 0)
	m.observe(flightWith(nil, start, advance, hold), nil)
	again := decisionAt(t0.Add(20*time.Second), v1alpha1.VerdictHold, 1, 1)
	m.observe(flightWith(nil, start, advance, again), nil)
	m.observe(flightWith(nil, start, advance, again), nil)
	rollback := decisionAt(t0.Add(30*time.Second), v1alpha1.VerdictRollback, 1, 0)
	// The log at its bound drops its oldest records: they were counted.
	m.observe(flightWith(nil, again, rollback), nil)
	if got, want := decisionCounts(t, m), map[string]float64{"start": 1, "advance": 1, "hold": 2, "rollback": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}

	m.forget("shop", "cart")
	if n := testutil.CollectAndCount(m.flights.decisions); n != 0 {
		t.Fatalf("%d decision series left after the Flight was forgotten", n)
	}
}

func TestAReplicaThatTakesTheLeaseOverDoesNotCountItsPredecessorsDecisions(t *testing.T) {
	m := NewMetrics(nil)
	m.Leading(true)
	now := time.Now()
	before := decisionAt(now.Add(-time.Minute), v1alpha1.VerdictRollback, 1, 0)
	m.observe(flightWith(nil, before), nil)
	// The series exists at 0 from the first look, so that increase()
	// sees the first rollback.
	if n := testutil.CollectAndCount(m.flights.decisions, "fledge_decisions_total"); n != 1 {
		t.Fatalf("%d decision series after the first look, want the rollback one at 0", n)
	}
	if got := decisionCounts(t, m); len(got) != 0 {
		t.Fatalf("counted %v from before this replica led, want nothing", got)
	}
	after := decisionAt(now.Add(time.Minute), v1alpha1.VerdictStart, 0, 0)
	m.observe(flightWith(nil, before, after), nil)
	if got, want := decisionCounts(t, m), map[string]float64{"start": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
}

func TestAHeldFlightExportsWhenItsHoldBeganByReason(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	since := metav1.NewTime(time.Unix(1767225600, 0))
	m.observe(flightWith(&v1alpha1.Hold{Reason: v1alpha1.HoldNotEnoughData, Since: since}), nil)
	m.observe(flightWith(&v1alpha1.Hold{Reason: v1alpha1.HoldInsufficientEvidence, Since: since}), nil)
	want := `
# HELP fledge_flight_hold_since_timestamp_seconds When each held Flight's hold began (Unix seconds), by reason; reason InsufficientEvidence is a rollout past its analysis deadline without a verdict. No series while a Flight moves.
# TYPE fledge_flight_hold_since_timestamp_seconds gauge
fledge_flight_hold_since_timestamp_seconds{flight="cart",namespace="shop",reason="InsufficientEvidence"} 1.7672256e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fledge_flight_hold_since_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	m.observe(flightWith(nil), nil)
	if n := testutil.CollectAndCount(m.flights.holdSince); n != 0 {
		t.Fatalf("%d hold series once the Flight moves, want none", n)
	}
}

func TestLeaderAndPolicyReloadsAreExported(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	// Before any reload: the file the engine started with is in force,
	// and both results are at 0; a follower reports 0.
	want := `
# HELP fledge_leader 1 while this replica holds the leader Lease and acts, 0 while it follows; the sum over replicas should be 1.
# TYPE fledge_leader gauge
fledge_leader 0
# HELP fledge_policy_last_reload_successful 1 if the policy file as it is now is in force, 0 if its last change was rejected (the log says why).
# TYPE fledge_policy_last_reload_successful gauge
fledge_policy_last_reload_successful 1
# HELP fledge_policy_reloads_total Reloads of the policy file after it changed, by result (ok, rejected: the previous policies stay in force).
# TYPE fledge_policy_reloads_total counter
fledge_policy_reloads_total{result="ok"} 0
fledge_policy_reloads_total{result="rejected"} 0
`
	names := []string{"fledge_leader", "fledge_policy_last_reload_successful", "fledge_policy_reloads_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	m.Leading(true)
	m.PolicyReloaded(nil)
	m.PolicyReloaded(errors.New("policies.yaml: steps: 0 is not a weight"))
	want = strings.NewReplacer("\nfledge_leader 0", "\nfledge_leader 1",
		"\nfledge_policy_last_reload_successful 1", "\nfledge_policy_last_reload_successful 0",
		`{result="ok"} 0`, `{result="ok"} 1`, `{result="rejected"} 0`, `{result="rejected"} 1`).Replace(want)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}
