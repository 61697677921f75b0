// Package engine drives the decision core (package rollout) against a
// cluster. It decides nothing itself.
//
// The controller (controller.go) is level-triggered: informers on
// Deployments, ReplicaSets, Services and Flights feed a work queue, workers
// run only on the leader, and RequeueAfter brings a Flight back when a
// step is due, without a goroutine per rollout. For each look it observes
// the Deployment, its canary, the routing and the release flags
// (observe.go, observe_flags.go), runs the analysis checks Decide asks for,
// and hands everything to rollout.Decide. The executor (executor.go)
// applies the Decision: the status first, with optimistic concurrency,
// then the actions in order, each idempotent. canary.go builds the canary
// Deployment and Service a revision needs.
//
// Around it:
//   - runner.go and dispatch.go make hook calls and deliver notifications
//     in the background, under the delivery ids the status records;
//   - inbox.go carries API actions (promote, abort, ...) to the next
//     decision of their Flight and brings its outcome back;
//   - secrets.go reads webhook and Slack secrets, cached briefly;
//   - metrics.go exports the engine's Prometheus metrics;
//   - policyfile.go loads the policy file and reloads it as it changes,
//     keeping the last good policies whole;
//   - conflicts.go remembers refused routing writes, so that a refusal is
//     a bounded hold instead of a retry at every look.
//
// rollout/api serves the gRPC API on top of it; cmd/fledge wires it.
package engine
