package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// answer is what a fake Prometheus says to one query.
type answer struct {
	value float64
	err   error
}

// fakePrometheus answers the samples and value queries of a canary, and
// records what it was asked.
type fakePrometheus struct {
	samples, value answer
	asked          []string
}

func (f *fakePrometheus) querier(t *testing.T, queries Queries, at time.Time) Querier {
	return QueryFunc(func(ctx context.Context, q string, when time.Time) (float64, error) {
		if !when.Equal(at) {
			t.Errorf("query at %v, want %v", when, at)
		}
		switch q {
		case queries.Samples:
			f.asked = append(f.asked, "samples")
			return f.samples.value, f.samples.err
		case queries.Value:
			f.asked = append(f.asked, "value")
			return f.value.value, f.value.err
		}
		t.Errorf("unexpected query %q", q)
		return 0, errors.New("unexpected query")
	})
}

func TestEvaluate(t *testing.T) {
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	vars := Vars{Namespace: "shop", Workload: "podinfo-canary", StableWorkload: "podinfo", Service: "podinfo"}
	successRate := Metric{Name: SuccessRate, Min: new(0.99), MinSamples: 100, Interval: time.Minute}
	queries, err := RenderQueries(successRate, vars)
	if err != nil {
		t.Fatal(err)
	}
	unreachable := fmt.Errorf("query %q: %w: dial tcp 127.0.0.1:9090: connect: connection refused", queries.Samples, ErrUnreachable)
	for _, tc := range []struct {
		name      string
		metric    Metric
		vars      Vars
		prom      fakePrometheus
		want      Check
		wantAsked []string
	}{
		{
			name: "passes a healthy canary", metric: successRate, vars: vars,
			prom:      fakePrometheus{samples: answer{value: 1234.7}, value: answer{value: 0.995}},
			want:      Check{Query: queries.Value, Value: new(0.995), Samples: 1234, Outcome: Pass},
			wantAsked: []string{"samples", "value"},
		},
		{
			name: "fails a canary below the minimum", metric: successRate, vars: vars,
			prom:      fakePrometheus{samples: answer{value: 1000}, value: answer{value: 0.9}},
			want:      Check{Query: queries.Value, Value: new(0.9), Samples: 1000, Outcome: Fail, Message: "0.9 is below the minimum of 0.99"},
			wantAsked: []string{"samples", "value"},
		},
		{
			name: "not enough data without asking for the value when the canary served too few requests", metric: successRate, vars: vars,
			prom: fakePrometheus{samples: answer{value: 99.9}, value: answer{value: 1}},
			want: Check{Query: queries.Value, Samples: 99, Outcome: NotEnoughData,
				Message: "99 requests served by the canary in the last 1m, fewer than the 100 required"},
			wantAsked: []string{"samples"},
		},
		{
			name: "holds with an error when Prometheus cannot be reached", metric: successRate, vars: vars,
			prom: fakePrometheus{samples: answer{err: unreachable}},
			want: Check{Query: queries.Value, Outcome: Error,
				Message: "success-rate: cannot count samples: " + unreachable.Error()},
			wantAsked: []string{"samples"},
		},
		{
			name: "error when the value query returns NaN", metric: successRate, vars: vars,
			prom: fakePrometheus{samples: answer{value: 500}, value: answer{err: fmt.Errorf("query %q: %w", queries.Value, ErrNaN)}},
			want: Check{Query: queries.Value, Samples: 500, Outcome: Error,
				Message: fmt.Sprintf("success-rate: cannot measure: query %q: the value is NaN", queries.Value)},
			wantAsked: []string{"samples", "value"},
		},
		{
			name: "error when a querier returns a NaN count instead of an error", metric: successRate, vars: vars,
			prom: fakePrometheus{samples: answer{value: math.NaN()}},
			want: Check{Query: queries.Value, Outcome: Error,
				Message: fmt.Sprintf("success-rate: cannot count samples: query %q: the count is NaN", queries.Samples)},
			wantAsked: []string{"samples"},
		},
		{
			name: "error without querying when the metric is invalid", metric: Metric{Name: SuccessRate, Interval: time.Minute}, vars: vars,
			want: Check{Outcome: Error, Message: "success-rate: invalid metric: min: one of min and max is required"},
		},
		{
			name: "error without querying when a variable is missing", metric: successRate, vars: Vars{Namespace: "shop"},
			want: Check{Outcome: Error,
				Message: "success-rate: cannot render: query: line 1, col 124: .Workload is empty"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Evaluate(context.Background(), tc.prom.querier(t, queries, at), tc.metric, tc.vars, at)
			want := tc.want
			want.Metric, want.Threshold, want.At = tc.metric.Name, threshold(tc.metric), at
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAsked, tc.prom.asked); diff != "" {
				t.Errorf("queries sent, in order (-want +got):\n%s", diff)
			}
		})
	}
}

// Evaluate never passes a canary it could not measure, whatever the
// querier says.
func TestEvaluateNeverPassesWithoutAMeasurement(t *testing.T) {
	errs := []error{ErrUnreachable, ErrTimeout, ErrQueryFailed, ErrBadResponse, ErrWarnings, ErrNoData, ErrManySeries, ErrWrongType, ErrNaN, ErrInfinite, context.Canceled}
	metrics := []Metric{
		{Name: SuccessRate, Min: new(0.99), Interval: time.Minute},
		{Name: LatencyP95, Max: new(200.0), MinSamples: 10, Interval: time.Minute},
		{Name: "custom", Query: `sum(x{a={{ .Workload }}})`, SamplesQuery: `sum(y{a={{ .Workload }}})`, Min: new(0.0), Interval: time.Minute},
	}
	for _, m := range metrics {
		for _, failing := range []string{"samples", "value"} {
			for _, e := range errs {
				q := QueryFunc(func(_ context.Context, query string, _ time.Time) (float64, error) {
					isSamples := query != mustRender(t, m).Value
					if isSamples == (failing == "samples") {
						return 0, fmt.Errorf("query %q: %w", query, e)
					}
					return 1000, nil
				})
				c := Evaluate(context.Background(), q, m, Vars{Namespace: "a", Workload: "b"}, time.Now())
				if c.Outcome != Error || c.Value != nil || c.Message == "" {
					t.Errorf("%s, %s query failing with %v: outcome %s, value %v, message %q; want an Error, no value, a message",
						m.Name, failing, e, c.Outcome, c.Value, c.Message)
				}
			}
		}
	}
}

func mustRender(t *testing.T, m Metric) Queries {
	t.Helper()
	q, err := RenderQueries(m, Vars{Namespace: "a", Workload: "b"})
	if err != nil {
		t.Fatal(err)
	}
	return q
}
