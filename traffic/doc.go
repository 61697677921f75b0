// Package traffic defines how fledge shifts a canary's share of traffic:
// the Router interface (ensure the routing, set absolute weights, read them
// back, release), the Target it acts on and the Weights it sets.
//
// traffic/istio implements it over Istio VirtualServices; traffic/traffictest
// holds an in-memory fake for the rollout engine's tests and the
// conformance suite that both the fake and traffic/istio pass.
package traffic
