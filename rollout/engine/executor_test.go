package engine

import (
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

func TestStatusEqualityUnderstandsCheckTimes(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := v1alpha1.FlightStatus{Decisions: []v1alpha1.DecisionRecord{{Checks: []analysis.Check{{Metric: "m", At: at}}}}}
	b := *a.DeepCopy()
	b.Decisions[0].Checks[0].At = at.In(time.FixedZone("x", 3600)) // same instant
	if !statusEqual.DeepEqual(a, b) {
		t.Error("the same instant in another zone compares unequal")
	}
	b.Decisions[0].Checks[0].At = at.Add(time.Second)
	if statusEqual.DeepEqual(a, b) {
		t.Error("different check times compare equal")
	}
}
