// Package webhooks will hold the outgoing hooks (gates, load tests, events),
// the load tester's core and Slack notifications.
//
// It is filled in by the webhooks issue.
package webhooks
