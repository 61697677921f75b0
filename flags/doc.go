// Package flags will integrate OpenFeature: cohorts, flag gates, and release
// flags stepped in lockstep with the canary's traffic.
//
// It is filled in by the feature-flag issue.
package flags
