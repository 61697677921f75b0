package engine

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
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

// Every look's duration is in fledge_reconcile_duration_seconds, whatever
// its result: reconcile latency is what a scale test reads (p50, p99).
func TestReconcileDurationsAreObserved(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.reconciled(3*time.Millisecond, nil)
	m.reconciled(700*time.Millisecond, errors.New("conflict"))
	want := `
# HELP fledge_reconcile_duration_seconds Time of one look at a Flight, end to end: cache reads, routing reads, analysis, decision and writes.
# TYPE fledge_reconcile_duration_seconds histogram
fledge_reconcile_duration_seconds_bucket{le="0.001"} 0
fledge_reconcile_duration_seconds_bucket{le="0.0025"} 0
fledge_reconcile_duration_seconds_bucket{le="0.005"} 1
fledge_reconcile_duration_seconds_bucket{le="0.01"} 1
fledge_reconcile_duration_seconds_bucket{le="0.025"} 1
fledge_reconcile_duration_seconds_bucket{le="0.05"} 1
fledge_reconcile_duration_seconds_bucket{le="0.1"} 1
fledge_reconcile_duration_seconds_bucket{le="0.25"} 1
fledge_reconcile_duration_seconds_bucket{le="0.5"} 1
fledge_reconcile_duration_seconds_bucket{le="0.75"} 2
fledge_reconcile_duration_seconds_bucket{le="1"} 2
fledge_reconcile_duration_seconds_bucket{le="1.5"} 2
fledge_reconcile_duration_seconds_bucket{le="2"} 2
fledge_reconcile_duration_seconds_bucket{le="3"} 2
fledge_reconcile_duration_seconds_bucket{le="5"} 2
fledge_reconcile_duration_seconds_bucket{le="10"} 2
fledge_reconcile_duration_seconds_bucket{le="30"} 2
fledge_reconcile_duration_seconds_bucket{le="60"} 2
fledge_reconcile_duration_seconds_bucket{le="+Inf"} 2
fledge_reconcile_duration_seconds_sum 0.703
fledge_reconcile_duration_seconds_count 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fledge_reconcile_duration_seconds"); err != nil {
		t.Error(err)
	}
}

// The engine's API requests are counted by verb and resource, read from
// the request: a look's LISTs, if any, would show.
func TestKubeRequestsAreCountedByVerbAndResource(t *testing.T) {
	m := NewMetrics(nil)
	rt := m.CountKubeRequests(roundTripperFunc(func(*http.Request) (*http.Response, error) { return &http.Response{StatusCode: 200}, nil }))
	for _, r := range []struct{ method, url string }{
		{"GET", "/apis/apps/v1/namespaces/shop/deployments"},
		{"GET", "/apis/apps/v1/deployments?watch=true&resourceVersion=7"},
		{"GET", "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web"},
		{"PATCH", "/apis/fledge.dev/v1alpha1/namespaces/shop/flights/web/status"},
		{"POST", "/api/v1/namespaces/shop/events"},
		{"PUT", "/apis/apps/v1/namespaces/shop/deployments/web-canary"},
		{"DELETE", "/api/v1/namespaces/shop/services/web-canary"},
		{"GET", "/version"},
	} {
		req := httptest.NewRequest(r.method, r.url, nil)
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct {
		verb, resource string
	}{
		{"list", "deployments"}, {"watch", "deployments"}, {"get", "virtualservices"}, {"patch", "flights/status"},
		{"create", "events"}, {"update", "deployments"}, {"delete", "services"}, {"get", "other"},
	} {
		if got := testutil.ToFloat64(m.kubeRequests.WithLabelValues(want.verb, want.resource)); got != 1 {
			t.Errorf("fledge_kube_requests_total{verb=%q,resource=%q} = %v, want 1", want.verb, want.resource, got)
		}
	}
	// Each is timed, but the watch (which lasts as long as it is open).
	for verb, want := range map[string]uint64{"list": 1, "get": 2, "patch": 1, "create": 1, "update": 1, "delete": 1, "watch": 0} {
		var out dto.Metric
		if err := m.latency.kubeRequest.WithLabelValues(verb).(prometheus.Histogram).Write(&out); err != nil {
			t.Fatal(err)
		}
		if got := out.GetHistogram().GetSampleCount(); got != want {
			t.Errorf("fledge_kube_request_duration_seconds{verb=%q} timed %d requests, want %d", verb, got, want)
		}
	}
}
