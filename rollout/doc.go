// Package rollout will hold fledge's decision core: the pure
// Decide(Input) Decision, the executor that applies its actions, the Flight
// status type, the controller loop and the gRPC service.
//
// It is filled in by the rollout engine issue.
package rollout
