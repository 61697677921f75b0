// Package traffic will hold the Router interface that shifts a canary's
// share of traffic (ensure, set absolute weights, read them back, release),
// with traffic/istio as its implementation over VirtualServices and
// DestinationRules, an in-memory fake, and a conformance suite both pass.
//
// It is filled in by the rollout engine issue.
package traffic
