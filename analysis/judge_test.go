package analysis

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	successRate := Metric{Name: SuccessRate, Min: new(0.99), MinSamples: 100, Interval: time.Minute}
	latency := Metric{Name: LatencyP95, Max: new(500.0), MinSamples: 100, Interval: 30 * time.Second}
	between := Metric{Name: "ratio", Query: "vector(1)", Min: new(0.9), Max: new(1.0), Interval: time.Minute}
	customSamples := Metric{Name: "ratio", Query: "vector(1)", SamplesQuery: "vector(1)", Min: new(0.5), MinSamples: 10, Interval: 5 * time.Minute}
	for _, tc := range []struct {
		name        string
		metric      Metric
		samples     int64
		value       float64
		wantOutcome Outcome
		wantMessage string
	}{
		{"passes when the success rate is above the minimum", successRate, 1000, 0.995, Pass, ""},
		{"passes when the success rate is exactly the minimum", successRate, 1000, 0.99, Pass, ""},
		{"fails when the success rate is below the minimum", successRate, 1000, 0.9, Fail, "0.9 is below the minimum of 0.99"},
		{"fails when every request failed", successRate, 1000, 0, Fail, "0 is below the minimum of 0.99"},
		{"writes a value close to the bound in full rather than as the bound", successRate, 1000, 0.98999999, Fail, "0.98999999 is below the minimum of 0.99"},
		{"passes when the latency is below the maximum", latency, 1000, 120, Pass, ""},
		{"passes when the latency is exactly the maximum", latency, 1000, 500, Pass, ""},
		{"fails when the latency is above the maximum", latency, 1000, 731.123456789, Fail, "731.123 is above the maximum of 500"},
		{"passes inside both bounds", between, 0, 0.95, Pass, ""},
		{"fails below both bounds", between, 0, 0.5, Fail, "0.5 is below the minimum of 0.9"},
		{"fails above both bounds", between, 0, 1.5, Fail, "1.5 is above the maximum of 1"},
		{"not enough data when the canary served fewer requests than the minimum", successRate, 99, 0.5, NotEnoughData,
			"99 requests served by the canary in the last 1m, fewer than the 100 required"},
		{"not enough data when the canary served no request", latency, 0, math.NaN(), NotEnoughData,
			"0 requests served by the canary in the last 30s, fewer than the 100 required"},
		{"not enough data in a custom count of samples", customSamples, 3, 1, NotEnoughData,
			"3 samples in the last 5m, fewer than the 10 required"},
		{"passes with exactly the minimum of samples", successRate, 100, 1, Pass, ""},
		{"error when Prometheus returns NaN", successRate, 1000, math.NaN(), Error,
			"the value is NaN (a ratio over no requests?): nothing to judge"},
		{"error when Prometheus returns +Inf, which no maximum would catch as NaN", latency, 1000, math.Inf(1), Error,
			"the value is +Inf: nothing to judge"},
		{"error when Prometheus returns -Inf", between, 0, math.Inf(-1), Error, "the value is -Inf: nothing to judge"},
		{"error when the samples query counted a negative number", successRate, -1, 1, Error,
			"the samples query counted -1; a count cannot be negative"},
		{"error when the metric has no bounds", Metric{Name: "x", Query: "vector(1)", Interval: time.Minute}, 0, 1, Error,
			"the metric has neither min nor max: nothing to judge against"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outcome, message := Judge(tc.metric, tc.samples, tc.value)
			if outcome != tc.wantOutcome || message != tc.wantMessage {
				t.Errorf("Judge(samples %d, value %v) = %s, %q; want %s, %q", tc.samples, tc.value, outcome, message, tc.wantOutcome, tc.wantMessage)
			}
		})
	}
}

func TestThreshold(t *testing.T) {
	for _, tc := range []struct {
		min, max *float64
		want     string
	}{
		{new(0.99), nil, ">= 0.99"},
		{nil, new(500.0), "<= 500"},
		{new(0.9), new(1.0), ">= 0.9 and <= 1"},
		{new(1e-6), nil, ">= 1e-06"},
		{nil, nil, ""},
	} {
		if got := threshold(Metric{Min: tc.min, Max: tc.max}); got != tc.want {
			t.Errorf("threshold(%v, %v) = %q, want %q", tc.min, tc.max, got, tc.want)
		}
	}
}

// AppendPercent, which comparisons' messages are written with at every
// look, writes what FormatPercent always did; AppendMargin writes what
// FormatMargin does.
func TestAppendPercentWritesWhatFormatPercentDid(t *testing.T) {
	was := func(r float64) string {
		p := 100 * r
		switch {
		case p == 0:
			return "0%"
		case p >= 10:
			return strconv.FormatFloat(p, 'f', 0, 64) + "%"
		case p >= 1:
			return strconv.FormatFloat(p, 'f', 1, 64) + "%"
		case p < 0.001:
			return "<0.001%"
		}
		return strconv.FormatFloat(p, 'g', 2, 64) + "%"
	}
	rates := []float64{0, math.Copysign(0, -1), 1, -1, 0.074, 0.0052, 0.000028, 8.8e-8, 1e-5, 0.09995, 0.0999, 0.1, 0.01, 0.00995, math.Inf(1), math.Inf(-1), math.NaN(), 1e300}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		rates = append(rates, math.Exp(rng.NormFloat64()*6), rng.Float64(), math.Round(rng.Float64()*1e5)/1e5)
	}
	for _, r := range rates {
		want := was(r)
		if got := FormatPercent(r); got != want {
			t.Fatalf("FormatPercent(%g) = %q, want %q", r, got, want)
		}
		if got := string(AppendPercent([]byte("x"), r)); got != "x"+want {
			t.Fatalf("AppendPercent(x, %g) = %q, want %q", r, got, "x"+want)
		}
		for _, ratio := range []float64{0, r, -r} {
			if got, want := string(AppendMargin([]byte("m"), r, ratio)), "m"+FormatMargin(r, ratio); got != want {
				t.Fatalf("AppendMargin(m, %g, %g) = %q, want %q", r, ratio, got, want)
			}
		}
	}
}
