// Package rollout is fledge's decision core and the machinery around it:
// the pure Decide(Input) Decision (decide.go, progress.go, promote.go,
// hooks.go, notify.go), the policies it reads (policy*.go), the Flight
// status it persists (status.go), the executor that applies its actions,
// the controller loop, and the background runner that makes hook calls
// and delivers notifications (runner.go, dispatch.go).
//
// The gRPC API lives in rollout/api, its proto in rollout/rolloutpb.
package rollout
