// Package traffictest helps test code that uses a traffic.Router, and
// Router implementations themselves.
//
// Router is an in-memory fake for the rollout engine's tests: it keeps the
// weights of every target (split, baseline, cohort and sticky cookie, as
// set), records the history of weights set so that a test can assert that
// no step was repeated or skipped, and can be told to fail its next calls.
//
// Run is the conformance suite: the behaviour every traffic.Router must
// have, run against the fake here and against traffic/istio both with a
// fake clientset and, in e2e/traffic, with a real API server and the mesh
// emulator checking that the weights written are the weights applied, to
// random requests and to those of a cohort or carrying a sticky cookie.
package traffictest
