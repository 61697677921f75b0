package analysis

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The built-ins' queries exactly as Prometheus receives them: a change to
// them shows here as a diff of PromQL.
func TestBuiltinsRender(t *testing.T) {
	const sel = `reporter="destination",destination_workload_namespace="shop",destination_workload="podinfo-canary"`
	const samples = `sum(increase(istio_requests_total{` + sel + `}[2m])) or vector(0)`
	// The comparator reports with the canary's workload, as Istio's
	// destination labels name it; it is no Istio reporter.
	const cmpSel = `destination_workload_namespace="shop",destination_workload="podinfo-canary"`
	want := map[string]Queries{
		SuccessRate: {
			Value:   `(sum(rate(istio_requests_total{` + sel + `,response_code!~"5..",grpc_response_status=~"0|"}[2m])) or vector(0)) / sum(rate(istio_requests_total{` + sel + `}[2m]))`,
			Samples: samples,
		},
		LatencyP95: {
			Value:   `histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{` + sel + `}[2m])))`,
			Samples: samples,
		},
		LatencyP99: {
			Value:   `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{` + sel + `}[2m])))`,
			Samples: samples,
		},
		RequestRate: {
			Value:   `sum(rate(istio_requests_total{` + sel + `}[2m]))`,
			Samples: samples,
		},
		ResponseDiff: {
			Value:   `(sum(increase(fledge_mirror_comparisons_total{` + cmpSel + `,result=~"status_differs|body_differs"}[2m])) or vector(0)) / sum(increase(fledge_mirror_comparisons_total{` + cmpSel + `,result=~"same|status_differs|body_differs"}[2m]))`,
			Samples: `sum(increase(fledge_mirror_comparisons_total{` + cmpSel + `,result=~"same|status_differs|body_differs"}[2m])) or vector(0)`,
		},
	}
	got := map[string]Queries{}
	for _, name := range append(Builtins(), ResponseDiff) {
		m := Metric{Name: name, Min: new(0.0), Interval: 2 * time.Minute}
		// The caller's interval is ignored: it is the metric's.
		q, err := RenderQueries(m, Vars{Namespace: "shop", Workload: "podinfo-canary", StableWorkload: "podinfo", Service: "podinfo", Interval: "1h"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got[name] = q
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("built-in queries (-want +got):\n%s", diff)
	}
}

func TestBuiltinNames(t *testing.T) {
	if diff := cmp.Diff([]string{"latency-p95", "latency-p99", "request-rate", "success-rate"}, Builtins()); diff != "" {
		t.Errorf("Builtins() (-want +got):\n%s", diff)
	}
	if !IsBuiltin(SuccessRate) || IsBuiltin("error-rate") {
		t.Errorf("IsBuiltin: success-rate %v, error-rate %v", IsBuiltin(SuccessRate), IsBuiltin("error-rate"))
	}
}
