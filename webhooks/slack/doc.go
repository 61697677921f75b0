// Package slack tells people in Slack what a rollout did and why: that it
// started (from which image to which, on what plan), that it was promoted
// (how long it took, the checks that passed last), rolled back or aborted
// (the failing check's value against its threshold, at which step, and
// who aborted through which interface), or is held (it cannot measure, or
// waits on a gate).
//
// Blocks lays a webhooks.Notification out as Block Kit; it is pure and
// holds all the wording. Sender posts it, through an incoming webhook or
// a bot token's chat.postMessage, as a Kubernetes Secret configures
// (ConfigFromSecret).
//
// Two things shape Sender. First, the webhook URL and the token are
// secrets (the URL alone grants posting), and HTTP errors quote the URL
// they were posting to: every error Send returns has them replaced
// ("https://hooks.slack.com/services/***"), and Config and Sender redact
// themselves under fmt, slog and encoding/json. Second, Send makes one
// attempt and says whether another may succeed (IsRetryable, RetryAfter):
// the engine's delivery loop retries, with backoff, a notification kept in
// the Flight's status until delivered, so a restart neither loses nor
// repeats it.
package slack
