package engine

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/analysis"
)

func TestCheckMetricsCarryValueAndThreshold(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.checked("shop", "cart", []analysis.Metric{{Name: "success-rate", Min: ptr.To(0.99)}},
		[]analysis.Check{{Metric: "success-rate", Outcome: analysis.Fail, Value: ptr.To(0.9)}})
	want := `
# HELP fledge_check_threshold The bounds each check's value is judged against (bound: min or max, inclusive).
# TYPE fledge_check_threshold gauge
fledge_check_threshold{bound="min",flight="cart",metric="success-rate",namespace="shop"} 0.99
# HELP fledge_check_value The last measured value of each check.
# TYPE fledge_check_value gauge
fledge_check_value{flight="cart",metric="success-rate",namespace="shop"} 0.9
# HELP fledge_checks_total Analysis checks run, by metric and outcome (pass, fail, inconclusive, not-enough-data, error).
# TYPE fledge_checks_total counter
fledge_checks_total{flight="cart",metric="success-rate",namespace="shop",outcome="fail"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fledge_check_threshold", "fledge_check_value", "fledge_checks_total"); err != nil {
		t.Fatal(err)
	}
	m.forget("shop", "cart")
	if n := testutil.CollectAndCount(m.threshold) + testutil.CollectAndCount(m.checkValue); n != 0 {
		t.Fatalf("%d series left after the Flight was forgotten", n)
	}
}
