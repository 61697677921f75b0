package rollout

import (
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
)

func TestStatusEqualityUnderstandsCheckTimes(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := FlightStatus{Decisions: []DecisionRecord{{Checks: []analysis.Check{{Metric: "m", At: at}}}}}
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
