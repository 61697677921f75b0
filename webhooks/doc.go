// Package webhooks is the vocabulary of fledge's conversation with the
// outside world during a rollout: the hook types a policy names (gates,
// load tests, rollback requests, events), the one signed JSON payload they
// all receive, a load tester's answer, and the notifications people read.
// It is pure data and signatures, so the decision core can speak it.
//
// The decision core (package rollout) decides which hook to call and which
// notification to send, each under a stable delivery id kept in the
// Flight's status. webhooks/hookclient performs the calls over HTTP,
// webhooks/slack delivers the notifications, and webhooks/loadtest is the
// load tester that answers rollout hooks. None of them decides.
//
// Some of these types are held in the Flight's status (its decision log,
// hook calls and outbox), and the Flight's CRD schema is generated from
// them: like the Flight API's own, none of their fields is required there.
//
// +kubebuilder:validation:Optional
package webhooks
