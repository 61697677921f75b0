package analysis

import (
	"time"
)

// Outcome is what one check concluded. "Cannot measure" outcomes
// (NotEnoughData, Error) are never a pass and never a failure of the
// canary: the rollout holds and says why.
type Outcome string

const (
	// Pass: measured with enough samples, within the threshold.
	Pass Outcome = "pass"
	// Fail: measured with enough samples, outside the threshold.
	Fail Outcome = "fail"
	// Inconclusive: measured, but the judge cannot tell (a comparison
	// whose difference is not significant yet, say).
	Inconclusive Outcome = "inconclusive"
	// NotEnoughData: fewer samples than the policy's minimum (no traffic
	// to the canary, for instance).
	NotEnoughData Outcome = "not-enough-data"
	// Error: the measurement itself failed: Prometheus unreachable, a
	// query error, an empty, NaN, infinite or multi-series result.
	Error Outcome = "error"
)

// Counts reports whether the outcome is a judgement of the canary (pass or
// fail), as opposed to an inability to judge.
func (o Outcome) Counts() bool { return o == Pass || o == Fail }

// Metric is one check of a canary as an admin-written policy defines it.
type Metric struct {
	// Name identifies the check: a built-in ("success-rate",
	// "latency-p95", "latency-p99", "request-rate") or the policy's own.
	Name string `json:"name"`
	// Query is a PromQL template for a custom metric (empty for built-ins).
	// Variables are written {{ .Namespace }}, {{ .Workload }}, ...; their
	// values are escaped so that no value can change the query's shape.
	Query string `json:"query,omitempty"`
	// SamplesQuery optionally gives a custom metric's sample count; built-ins
	// count the canary's requests over the interval.
	SamplesQuery string `json:"samplesQuery,omitempty"`
	// Min and Max bound the value (inclusive); at least one is set.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// MinSamples: fewer samples than this is NotEnoughData.
	MinSamples int64 `json:"minSamples,omitempty"`
	// Interval is the range the query looks back over (its [range]).
	Interval time.Duration `json:"interval,omitempty"`
	// Compare, when set, judges the metric against stable instead of
	// against Min and Max (the built-in comparisons always are).
	Compare *Comparison `json:"compare,omitempty"`
}

// Vars are the values a query template may use. All are names chosen by
// fledge or Kubernetes, yet all are escaped all the same.
type Vars struct {
	Namespace      string // the app's namespace
	Workload       string // the canary's workload ("<name>-canary")
	StableWorkload string // the stable workload (the user's Deployment)
	Service        string // the host clients call
	Interval       string // the metric's interval as PromQL writes it ("1m")
	// Flag, OnVariant and OffVariant are the policy's first release
	// flag and its variants, so that a check can compare the users served
	// the on-variant with the others where telemetry carries the variant.
	Flag, OnVariant, OffVariant string
}

// Check is the record of one measurement and its verdict, as the decision
// log keeps it: enough for a person to see why the rollout moved.
type Check struct {
	Metric    string   `json:"metric"`
	Query     string   `json:"query"`           // the rendered query
	Value     *float64 `json:"value,omitempty"` // nil when nothing was measured
	Threshold string   `json:"threshold"`       // e.g. ">= 0.99", "<= 500"
	Samples   int64    `json:"samples"`
	Outcome   Outcome  `json:"outcome"`
	Message   string   `json:"message,omitempty"` // why, for anything but a plain pass
	// Reading is a comparison's measurement: both sides' counters at At.
	Reading *Reading `json:"reading,omitempty"`
	// Compared is what a judged comparison knows, both sides and the
	// evidence: the structured form of its message.
	Compared *Compared `json:"compared,omitempty"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	At time.Time `json:"at"`
}

// DeepCopyInto copies in into out, sharing no memory with it. The Flight
// API's generated deepcopy calls it for the checks a status holds. It is
// written by hand because deepcopy-gen cannot copy a time.Time, which is a
// value (its *Location is immutable and safe to share).
func (in *Check) DeepCopyInto(out *Check) {
	*out = *in
	if in.Value != nil {
		v := *in.Value
		out.Value = &v
	}
	if in.Reading != nil {
		r := *in.Reading
		out.Reading = &r
	}
	if in.Compared != nil {
		c := *in.Compared
		out.Compared = &c
	}
}
