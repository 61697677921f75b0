// Package sim plays rollouts against the real decision core
// (rollout.Decide) with simulated traffic, to measure what a policy decides
// at each traffic level: how often a healthy canary is rolled back, how
// often a bad one is promoted or left serving, how long a verdict takes,
// and how many bad responses users get meanwhile. `make sim` prints its
// tables (e2e/cmd/sim).
//
// The world around Decide is a small model of the engine and the cluster:
// the canary becomes ready a few seconds after it is asked for, the stable
// Deployment rolls to the new template after it is unpaused, the routing
// does what was set, and Prometheus holds exact counters, sampled every
// second. Traffic is Poisson, split between the sides by the weights; each
// request fails independently (Bernoulli) at its side's error rate, and
// its latency is log-normal, counted in Istio's default duration buckets.
// Scenarios change the canary's error rate or tail latency, and can add
// incidents that hit both sides at once.
//
// Runs are seeded one by one, so the tables are the same on every machine
// and however many cores play them.
package sim
