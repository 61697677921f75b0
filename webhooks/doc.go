// Package webhooks is fledge's side of the conversation with the outside
// world during a rollout: the hooks a policy names (gates, load tests,
// rollback requests, events), the signed JSON payload they all receive,
// the load tester that answers rollout hooks (webhooks/loadtest), and the
// Slack notifications that tell people what happened and why
// (webhooks/slack).
//
// The decision core (package rollout) decides which hook to call and which
// notification to send, each under a stable delivery id kept in the
// Flight's status; this package performs the calls. It never decides.
package webhooks
