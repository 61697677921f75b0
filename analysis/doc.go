// Package analysis will judge a canary from metrics: queries against
// Prometheus (through client_golang's API client and prometheus/common's
// model) kept apart from the judges (thresholds, comparison, sequential),
// whose outcomes are data: pass, fail, inconclusive, not-enough-data, error.
//
// It is filled in by the rollout engine issue; the sandbox it is tested in
// lives under e2e/.
package analysis
