// Package slackd is the sandbox's Slack: an HTTP server on loopback that
// answers as Slack does, as far as a client (slack-go, and so fledge's
// webhooks/slack.Sender) can see, and records every message it accepts,
// so that end-to-end tests can read what people would have been told.
//
// It serves the two ways fledge posts. An incoming webhook at WebhookURL
// answers 200 "ok", 400 "invalid_payload" for a body that is not JSON or
// has neither text nor blocks, and 404 "no_service" for any other path.
// chat.postMessage under APIURL takes a JSON body with a bearer token or a
// form-encoded one (slack-go v0.35.0 sends a form, with the token as a
// field), and answers HTTP 200 with {"ok":false,"error":...} for
// not_authed, invalid_auth, channel_not_found, no_text and invalid_blocks,
// or {"ok":true,"channel":...,"ts":...}.
//
// Failures are injected, not simulated by timing: FailNext answers the
// next n requests with a status (a 429 with "Retry-After: 1", as Slack
// would), FailUntilCleared every request until Clear. Failed requests are
// counted (Failures), never recorded as messages.
package slackd
