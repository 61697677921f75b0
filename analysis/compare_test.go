package analysis

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/analysis/sequential"
)

func TestValidateComparisons(t *testing.T) {
	one := 1.0
	for _, tc := range []struct {
		name string
		m    Metric
		want []string // substrings of the error, in order; none: valid
	}{
		{"the error-rate built-in", Metric{Name: ErrorRate, Compare: &Comparison{MaxIncrease: 0.01}, Interval: time.Minute}, nil},
		{"the latency built-in with a bound", Metric{Name: Latency, Compare: &Comparison{MaxIncrease: 0.02, SlowerThanMs: 500}, Interval: time.Minute}, nil},
		{"a custom comparison", Metric{Name: "job-failures", Compare: &Comparison{MaxIncrease: 0.01,
			Requests: `sum(jobs_total{workload={{ .Workload }}})`, Bad: `sum(jobs_failed_total{workload={{ .Workload }}})`}, Interval: time.Minute}, nil},
		{"latency without a bound", Metric{Name: Latency, Compare: &Comparison{MaxIncrease: 0.01}, Interval: time.Minute}, []string{"slowerThan: required"}},
		{"a negative margin", Metric{Name: ErrorRate, Compare: &Comparison{MaxIncrease: -0.01}, Interval: time.Minute}, []string{"maxIncrease: -0.01: must be at least 0"}},
		{"a margin of a whole rate", Metric{Name: ErrorRate, Compare: &Comparison{MaxIncrease: 1}, Interval: time.Minute}, []string{"maxIncrease: 1: must be at least 0 and below 1"}},
		{"a NaN margin", Metric{Name: ErrorRate, Compare: &Comparison{MaxIncrease: math.NaN()}, Interval: time.Minute}, []string{"maxIncrease: NaN"}},
		{"a bound on error-rate", Metric{Name: ErrorRate, Compare: &Comparison{SlowerThanMs: 100}, Interval: time.Minute}, []string{"slowerThan: only the latency comparison"}},
		{"a threshold on a comparison", Metric{Name: ErrorRate, Compare: &Comparison{}, Min: &one, Interval: time.Minute}, []string{"min: a comparison is judged against stable"}},
		{"minSamples on a comparison", Metric{Name: ErrorRate, Compare: &Comparison{}, MinSamples: 100, Interval: time.Minute}, []string{"minSamples: a comparison needs no minimum"}},
		{"a custom comparison without bad", Metric{Name: "jobs", Compare: &Comparison{Requests: `sum(jobs_total)`}, Interval: time.Minute}, []string{"bad: required"}},
		{"a custom comparison over a range", Metric{Name: "jobs", Compare: &Comparison{
			Requests: `sum(increase(jobs_total{workload={{ .Workload }}}[{{ .Interval }}]))`, Bad: `sum(jobs_failed_total)`}, Interval: time.Minute}, []string{"requests: a comparison reads cumulative counters"}},
		{"a template that does not parse", Metric{Name: "jobs", Compare: &Comparison{Requests: `sum(jobs_total{`, Bad: `sum(x)`}, Interval: time.Minute}, []string{"requests:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.m)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it")
			}
			rest := err.Error()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q", err, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// counters is a fake Prometheus holding each workload's counters, keyed
// by the query as it must be rendered.
func counters(t *testing.T, answers map[string]float64) Querier {
	return QueryFunc(func(_ context.Context, q string, _ time.Time) (float64, error) {
		v, ok := answers[q]
		if !ok {
			t.Logf("unexpected query %q", q)
			return 0, fmt.Errorf("query %q: %w", q, ErrNoData)
		}
		if math.IsNaN(v) {
			return 0, fmt.Errorf("query %q: %w", q, ErrUnreachable)
		}
		return v, nil
	})
}

var compareVars = Vars{Namespace: "shop", Workload: "web-canary", StableWorkload: "web", Service: "web"}

func sel(workload string) string {
	return `reporter="destination",destination_workload_namespace="shop",destination_workload="` + workload + `"`
}

func TestMeasureCountersReadsBothSides(t *testing.T) {
	m := Metric{Name: ErrorRate, Compare: &Comparison{MaxIncrease: 0.01}, Interval: time.Minute}
	q := counters(t, map[string]float64{
		`sum(istio_requests_total{` + sel("web-canary") + `}) or vector(0)`:                                                 120,
		`sum(istio_requests_total{` + sel("web-canary") + `,response_code!~"5..",grpc_response_status=~"0|"}) or vector(0)`: 117,
		`sum(istio_requests_total{` + sel("web") + `}) or vector(0)`:                                                        1000,
		`sum(istio_requests_total{` + sel("web") + `,response_code!~"5..",grpc_response_status=~"0|"}) or vector(0)`:        995,
	})
	c := Evaluate(context.Background(), q, m, compareVars, time.Unix(100, 0))
	want := &Reading{Canary: sequential.Counts{Requests: 120, Bad: 3}, Stable: sequential.Counts{Requests: 1000, Bad: 5}}
	if diff := cmp.Diff(want, c.Reading); diff != "" || c.Outcome != "" || c.Threshold != "<= stable + 1 pt" {
		t.Errorf("check %+v, reading (-want +got):\n%s", c, diff)
	}
}

func TestMeasureCountersHoldsOnWhatItCannotRead(t *testing.T) {
	latency := Metric{Name: Latency, Compare: &Comparison{MaxIncrease: 0.01, SlowerThanMs: 500}, Interval: time.Minute}
	errorRate := Metric{Name: ErrorRate, Compare: &Comparison{MaxIncrease: 0.01}, Interval: time.Minute}
	canaryTimed := `sum(istio_request_duration_milliseconds_count{` + sel("web-canary") + `}) or vector(0)`
	canaryRequests := `sum(istio_requests_total{` + sel("web-canary") + `}) or vector(0)`
	canaryOK := `sum(istio_requests_total{` + sel("web-canary") + `,response_code!~"5..",grpc_response_status=~"0|"}) or vector(0)`
	for _, tc := range []struct {
		name    string
		m       Metric
		answers map[string]float64
		want    string
	}{
		{"a bound the histogram has no bucket for", latency, map[string]float64{canaryTimed: 50}, "no bucket at this bound"},
		{"Prometheus down", errorRate, map[string]float64{canaryRequests: math.NaN()}, "cannot read the canary's counters"},
		{"more good than requests", errorRate, map[string]float64{canaryRequests: 10, canaryOK: 11}, "the counters disagree"},
		{"a negative count", errorRate, map[string]float64{canaryRequests: -4}, "is not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Evaluate(context.Background(), counters(t, tc.answers), tc.m, compareVars, time.Unix(100, 0))
			if c.Outcome != Error || !strings.Contains(c.Message, tc.want) || c.Reading != nil {
				t.Errorf("check %+v, want an Error saying %q and no reading", c, tc.want)
			}
		})
	}
}

func TestMeasureCountersAsksNothingMoreOfASideThatServedNothing(t *testing.T) {
	m := Metric{Name: Latency, Compare: &Comparison{MaxIncrease: 0.01, SlowerThanMs: 500}, Interval: time.Minute}
	q := counters(t, map[string]float64{
		`sum(istio_request_duration_milliseconds_count{` + sel("web-canary") + `}) or vector(0)`: 0,
		`sum(istio_request_duration_milliseconds_count{` + sel("web") + `}) or vector(0)`:        40,
		`sum(istio_request_duration_milliseconds_bucket{` + sel("web") + `,le="500"})`:           38,
	})
	c := Evaluate(context.Background(), q, m, compareVars, time.Unix(100, 0))
	want := &Reading{Stable: sequential.Counts{Requests: 40, Bad: 2}}
	if diff := cmp.Diff(want, c.Reading); diff != "" {
		t.Errorf("check %+v (-want +got):\n%s", c, diff)
	}
}

// One bound of the latency distribution is a latency comparison under its
// own name, reading its own bucket.
func TestALatencyBoundOfTheDistributionReadsItsBucket(t *testing.T) {
	m := Metric{Name: LatencyAt(1000), Compare: &Comparison{MaxIncrease: 0.01, SlowerThanMs: 1000}, Interval: time.Minute}
	if m.Name != "latency-1s" {
		t.Errorf("name %q, want latency-1s", m.Name)
	}
	if err := Validate(m); err != nil {
		t.Fatal(err)
	}
	q := counters(t, map[string]float64{
		`sum(istio_request_duration_milliseconds_count{` + sel("web-canary") + `}) or vector(0)`: 100,
		`sum(istio_request_duration_milliseconds_bucket{` + sel("web-canary") + `,le="1000"})`:   90,
		`sum(istio_request_duration_milliseconds_count{` + sel("web") + `}) or vector(0)`:        1000,
		`sum(istio_request_duration_milliseconds_bucket{` + sel("web") + `,le="1000"})`:          998,
	})
	c := Evaluate(context.Background(), q, m, compareVars, time.Unix(100, 0))
	want := &Reading{Canary: sequential.Counts{Requests: 100, Bad: 10}, Stable: sequential.Counts{Requests: 1000, Bad: 2}}
	if diff := cmp.Diff(want, c.Reading); diff != "" {
		t.Errorf("check %+v (-want +got):\n%s", c, diff)
	}
	// A custom comparison is never taken for one: it has counters.
	custom := Metric{Name: "jobs", Compare: &Comparison{Requests: "sum(a)", Bad: "sum(b)"}}
	if _, ok := custom.LatencyBound(); ok {
		t.Error("a custom comparison taken for a latency bound")
	}
}

func TestFormatMarginSaysAbsoluteOrRelative(t *testing.T) {
	if got := FormatMargin(0.01, 0); got != "+1 pt" {
		t.Errorf("absolute: %q", got)
	}
	if got := FormatMargin(0, 2.5); got != "x2.5" {
		t.Errorf("relative: %q", got)
	}
	ratio := Metric{Name: ErrorRate, Compare: &Comparison{MaxRatio: 2}}
	if got := threshold(ratio); got != "<= stable x 2" {
		t.Errorf("threshold %q", got)
	}
	if err := Validate(Metric{Name: ErrorRate, Compare: &Comparison{MaxRatio: math.NaN()}}); err == nil || !strings.Contains(err.Error(), "maxRatio") {
		t.Errorf("a NaN ratio: %v", err)
	}
}
