// Package demo is the scenario `make demo` plays in the sandbox.
//
// Until the rollout engine lands it walks a canary by hand: it shifts a
// VirtualService's weights step by step towards a new revision and prints,
// at each step, what Prometheus measured for each revision (traffic share,
// success rate, p95 latency): the signals fledge will judge on its own.
package demo
