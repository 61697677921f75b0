package slack

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Error is a failed Send, told apart for the delivery loop: whether trying
// again later may succeed, and when Slack asked to be tried again. Its
// message and its cause have the webhook URL and token taken out.
type Error struct {
	// Via is how the message went: "webhook" or "chat.postMessage".
	Via string
	// Status is the HTTP status answered; 0 when there was no answer.
	Status int
	// Code is Slack's error code ("channel_not_found", "invalid_auth"),
	// when chat.postMessage answered one.
	Code string
	// RetryAfter is the wait Slack asked for (Retry-After), if it did.
	RetryAfter time.Duration
	// Retryable: 5xx, 429, Slack's transient codes and failures to reach
	// Slack (including the context's deadline) may pass on a later
	// attempt; other 4xx and codes such as invalid_auth will not.
	Retryable bool

	msg   string
	cause error
}

func (e *Error) Error() string { return e.msg }

// Unwrap gives the redacted cause, so that errors.Is(err,
// context.DeadlineExceeded) and errors.As to slack-go's and net's error
// types keep working.
func (e *Error) Unwrap() error { return e.cause }

// IsRetryable reports whether a later attempt may succeed: true for 5xx,
// 429 and transport errors, false for other 4xx (a bad token, an unknown
// channel, a payload Slack refuses) and for nil. It takes Send's *Error or
// a raw slack-go error.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Retryable
	}
	return classify(err, 0, "").Retryable
}

// RetryAfter is the wait Slack asked for before the next attempt, or 0
// when it asked for none.
func RetryAfter(err error) time.Duration {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.RetryAfter
	}
	if rl, ok := errors.AsType[*slack.RateLimitedError](err); ok {
		return rl.RetryAfter
	}
	return 0
}

// transientCodes are chat.postMessage's error codes that say "not now"
// rather than "never" (answered with HTTP 200 and ok:false).
var transientCodes = map[string]bool{
	"ratelimited":         true,
	"rate_limited":        true,
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
	"team_added_to_org":   true,
}

// classify sorts an error from slack-go. status and retryAfter are what
// the transport saw answered (0 and "" when unknown): slack-go drops the
// status on some paths, a 429 whose Retry-After is not a number of
// seconds becoming a bare strconv error, for one.
func classify(err error, status int, retryAfter string) *Error {
	e := &Error{Status: status}
	if rl, ok := errors.AsType[*slack.RateLimitedError](err); ok {
		e.Status = http.StatusTooManyRequests
		e.RetryAfter, e.Retryable = rl.RetryAfter, true
		return e
	}
	if sc, ok := errors.AsType[slack.StatusCodeError](err); ok {
		e.Status, e.Retryable = sc.Code, sc.Retryable()
	} else if se, ok := errors.AsType[slack.SlackErrorResponse](err); ok {
		e.Code, e.Retryable = se.Err, transientCodes[se.Err]
	} else if status != 0 && status != http.StatusOK {
		e.Retryable = status >= 500 || status == http.StatusTooManyRequests
	} else {
		e.Retryable = isTransport(err)
	}
	if e.Retryable && retryAfter != "" {
		if s, perr := strconv.ParseInt(strings.TrimSpace(retryAfter), 10, 64); perr == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

// isTransport reports an error reaching Slack, or of waiting for it:
// nothing was answered, so nothing says the message is wrong.
func isTransport(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	if _, ok := errors.AsType[*url.Error](err); ok {
		return true
	}
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// redactor takes a sender's secrets out of text.
type redactor struct {
	r       *strings.Replacer
	secrets []string
}

// newRedactor replaces each secret with its stand-in, longest first, so
// that a URL is replaced whole before its path is.
func newRedactor(pairs ...string) redactor {
	type pair struct{ secret, stand string }
	var ps []pair
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != "" {
			ps = append(ps, pair{pairs[i], pairs[i+1]})
		}
	}
	// Longest first: strings.Replacer tries the old strings in argument
	// order at each position.
	slices.SortStableFunc(ps, func(a, b pair) int { return len(b.secret) - len(a.secret) })
	var red redactor
	args := make([]string, 0, 2*len(ps))
	for _, p := range ps {
		args = append(args, p.secret, p.stand)
		red.secrets = append(red.secrets, p.secret)
	}
	red.r = strings.NewReplacer(args...)
	return red
}

func (r redactor) redact(s string) string { return r.r.Replace(s) }

func (r redactor) leaks(s string) bool {
	for _, secret := range r.secrets {
		if strings.Contains(s, secret) {
			return true
		}
	}
	return false
}

// sanitize returns err with the secrets out of it, keeping what errors.Is
// and errors.As look for where it can: a *url.Error (which quotes the URL
// it was posting to) is rebuilt with the URL redacted around its own
// cause, which names only the host's address.
func (r redactor) sanitize(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		inner := ue.Err
		if inner != nil && r.leaks(inner.Error()) {
			inner = errors.New(r.redact(inner.Error()))
		}
		return &url.Error{Op: ue.Op, URL: r.redact(ue.URL), Err: inner}
	}
	if r.leaks(err.Error()) {
		return errors.New(r.redact(err.Error()))
	}
	return err
}
