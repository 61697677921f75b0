// Package scale holds make bench-scale: one engine with N opted-in
// Deployments, M of them rolled out at once, in the sandbox, with the
// figures a platform team sizes fledge by (adoption time, time to the
// first canary weight and to Succeeded, reconcile latency, API calls and
// PromQL queries per rollout, engine, API server and Prometheus memory).
// It has no tests, only the benchmark: make test does not run it.
package scale
