// Package rollout is fledge's decision core. Decide(Input) Decision is a
// pure function of the effective policy, the Flight's persisted status,
// what the engine observed (revisions, readiness, weights as read back,
// release flags), the analysis verdicts, hook answers and the time. It
// returns the next status, an ordered list of actions and when to look
// again (decide.go, progress.go, promote.go, hooks.go, notify.go,
// flags.go). The package also holds the policies Decide reads and their
// validation (policy*.go, annotations.go) and the closed set of actions
// (actions.go). The status itself is the Flight API's type
// (rollout/apis/fledge/v1alpha1).
//
// What it may not do: reach the API server, the network or the file
// system, read a clock, start a goroutine, or draw a random number.
// Everything read from the world comes in Input, time as Input.Now, and
// every effect leaves as an Action that rollout/engine applies. The
// tests in purity_test.go hold that line: an import allow-list, no
// clock reads or goroutines in the source, and no client library in the
// dependency closure.
//
// Whole scenarios are golden scripts under testdata (script_test.go,
// rewritten with -rewrite), so a change of behaviour reads as a text diff.
package rollout
