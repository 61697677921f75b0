// Package flags integrates feature flags with rollouts: cohort stages,
// flag gates, and release flags stepped in lockstep with the canary's
// traffic, in flagd's flag format.
//
// This package is the pure part the decision core uses: Rewrite computes a
// linked release flag's targeting for a stage of the rollout, and
// DefinitionHash and Serving say what a flag is and serves; GateResult and
// RolloutContext are a flag gate's answer and the rollout it was asked
// about. flags/flagd evaluates gates through OpenFeature with flagd's
// in-process provider and validates documents with flagd's own engine.
package flags
