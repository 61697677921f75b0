// Package flags integrates feature flags with rollouts: cohort stages,
// flag gates, and release flags stepped in lockstep with the canary's
// traffic, in flagd's flag format (evaluated through OpenFeature).
//
// So far it holds the pure part of release flags: Rewrite, which computes
// a linked flag's targeting for a stage of the rollout. The feature-flag
// issue wires it into the decision core and adds gates and cohorts.
package flags
