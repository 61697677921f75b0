package flags

// A flag gate is an OpenFeature boolean flag that a rollout asks before
// every traffic increase and before promotion, with the rollout as the
// evaluation context: a release freeze, a kill switch, a team's hold. A
// false holds the rollout; so does a flag that cannot be read, since a
// gate that cannot be read must never let a rollout through.

// Verdict is a gate's answer.
type Verdict string

const (
	// Open: the flag evaluated to true.
	Open Verdict = "Open"
	// Closed: the flag evaluated to false.
	Closed Verdict = "Closed"
	// Unreadable: no answer (the source is broken, the flag is missing
	// or not a boolean, the provider is not ready, or it timed out).
	Unreadable Verdict = "Unreadable"
)

// GateResult is one gate flag's evaluation.
type GateResult struct {
	Flag    string
	Verdict Verdict
	// Variant is the variant served, when there was an answer.
	Variant string
	// Reason is OpenFeature's resolution reason (TARGETING_MATCH, STATIC,
	// ...) or, when Unreadable, what went wrong.
	Reason string
}

// RolloutContext is what a gate flag's targeting can look at: the
// rollout, as OpenFeature evaluation context attributes of the same names
// (the targeting key is "<namespace>/<app>").
type RolloutContext struct {
	App, Namespace, Policy string
	Revision               string
	Images                 []string
	// Step is the 1-based stage about to be left (0 before traffic),
	// Weight the canary's share now and NextWeight after the increase
	// (100 before promotion).
	Step, Weight, NextWeight int
	// Cohort names the cohort stage being left, if it is one.
	Cohort string
	// Promotion: the gate is asked before promoting.
	Promotion bool
}
