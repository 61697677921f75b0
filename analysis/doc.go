// Package analysis judges a canary from metrics: it renders a policy's
// PromQL checks for one canary, measures them in Prometheus and decides,
// for each, pass, fail, not-enough-data or error.
//
// The query is I/O and the judgement is pure. Judge decides from a sample
// count and a value alone; Evaluate does the measuring through a Querier
// (analysis/promclient, over client_golang's API client, in production; a
// closure in tests) and records everything in a Check for the decision
// log. This package holds no network client of its own, so the decision
// core can read its checks and verdicts without linking one. A
// measurement that fails, Prometheus down or a query returning nothing,
// NaN or several series, is a verdict (Error), never a panic and never a
// silent zero: "cannot measure" holds the rollout and is never counted as
// a pass or as a failure of the canary.
//
// Queries are templates (ParseTemplate) whose variables, the canary's
// namespace and workload and the like, expand to escaped PromQL string
// literals, so that no value can change a query's shape; templates are
// checked when a policy is loaded (Validate). Built-in metrics
// (success-rate, latency-p95, latency-p99, request-rate) are such templates
// over Istio's standard telemetry, and count the canary's requests as
// their samples.
//
// Some of these types are held in the Flight's status (its decision log,
// hook calls and outbox), and the Flight's CRD schema is generated from
// them: like the Flight API's own, none of their fields is required there.
//
// +kubebuilder:validation:Optional
package analysis
