package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/webhooks"
)

// rollback is the notification the sender tests send.
func rollback() webhooks.Notification {
	return with(base("RolledBack"), func(n *webhooks.Notification) {
		n.Step, n.Weight = 1, 25
		n.Reason = "success-rate 0.912346 is below the minimum of 0.99"
		n.Checks = []analysis.Check{failingRate}
	})
}

// server answers with h and counts the requests it got.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func webhookSender(t *testing.T, base string) *Sender {
	t.Helper()
	s, err := New(Config{WebhookURL: base + "/services/" + secretPath})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func tokenSender(t *testing.T, apiURL string) *Sender {
	t.Helper()
	s, err := New(Config{Token: secretToken, Channel: "#rollouts", APIURL: apiURL})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestSendPostsToAnIncomingWebhook(t *testing.T) {
	var got struct {
		path string
		body slack.WebhookMessage
	}
	srv, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		got.path = r.URL.Path
		if err := json.NewDecoder(r.Body).Decode(&got.body); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		io.WriteString(w, "ok")
	})
	if err := webhookSender(t, srv.URL).Send(context.Background(), rollback()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if calls.Load() != 1 || got.path != "/services/"+secretPath {
		t.Fatalf("server got %d calls, last to %q; want 1 to the webhook's path", calls.Load(), got.path)
	}
	if !strings.Contains(got.body.Text, "Rolled back shop/checkout at step 2/3 (25%)") {
		t.Errorf("text = %q, want the fallback line", got.body.Text)
	}
	if got.body.Blocks == nil || len(got.body.Blocks.BlockSet) == 0 {
		t.Fatalf("no blocks sent")
	}
	if shown := rendered(t, got.body.Blocks.BlockSet); !strings.Contains(shown, "success-rate* 0.9123 (threshold >= 0.99, 1834 samples)") {
		t.Errorf("blocks sent do not show the failing check:\n%s", shown)
	}
}

func TestSendPostsWithABotToken(t *testing.T) {
	var form url.Values
	var path string
	srv, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
		}
		form = r.PostForm
		io.WriteString(w, `{"ok":true,"channel":"C0123","ts":"1700000000.000100"}`)
	})
	// No trailing slash: New adds the one slack-go needs.
	if err := tokenSender(t, srv.URL+"/api").Send(context.Background(), rollback()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if calls.Load() != 1 || path != "/api/chat.postMessage" {
		t.Fatalf("server got %d calls, last to %q; want 1 to /api/chat.postMessage", calls.Load(), path)
	}
	if form.Get("token") != secretToken || form.Get("channel") != "#rollouts" {
		t.Errorf("token sent: %v (not shown), channel sent: %q", form.Get("token") != "", form.Get("channel"))
	}
	if !strings.Contains(form.Get("text"), "Rolled back shop/checkout") {
		t.Errorf("text = %q", form.Get("text"))
	}
	var blocks slack.Blocks
	if err := json.Unmarshal([]byte(form.Get("blocks")), &blocks); err != nil {
		t.Fatalf("blocks sent are not Block Kit JSON: %v", err)
	}
	if shown := rendered(t, blocks.BlockSet); !strings.Contains(shown, "*Why:* success-rate 0.912346 is below the minimum of 0.99") {
		t.Errorf("blocks sent do not give the reason:\n%s", shown)
	}
}

func TestSendErrorsSayWhetherToRetry(t *testing.T) {
	status := func(code int, body string, header ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	apiError := func(code string) http.HandlerFunc {
		return status(http.StatusOK, `{"ok":false,"error":"`+code+`"}`)
	}
	tests := []struct {
		name       string
		token      bool // chat.postMessage, else the webhook
		handler    http.HandlerFunc
		retryable  bool
		status     int
		code       string
		retryAfter time.Duration
	}{
		{name: "a webhook's 500 is retryable", handler: status(500, "rollup_error"), retryable: true, status: 500},
		{name: "a webhook's 503 with Retry-After asks to wait", handler: status(503, "", "Retry-After", "30"), retryable: true, status: 503, retryAfter: 30 * time.Second},
		{name: "a webhook's 429 with Retry-After is retryable after the wait", handler: status(429, "", "Retry-After", "7"), retryable: true, status: 429, retryAfter: 7 * time.Second},
		{name: "a 429 whose Retry-After is a date is still retryable", handler: status(429, "", "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"), retryable: true, status: 429},
		{name: "a 429 without Retry-After is retryable", handler: status(429, ""), retryable: true, status: 429},
		{name: "a webhook's invalid_payload is not retryable", handler: status(400, "invalid_payload"), status: 400},
		{name: "a webhook's action_prohibited is not retryable", handler: status(403, "action_prohibited"), status: 403},
		{name: "a webhook's no_service is not retryable", handler: status(404, "no_service"), status: 404},
		{name: "a webhook's channel_is_archived is not retryable", handler: status(410, "channel_is_archived"), status: 410},
		{name: "a bad token is not retryable", token: true, handler: apiError("invalid_auth"), status: 200, code: "invalid_auth"},
		{name: "an unknown channel is not retryable", token: true, handler: apiError("channel_not_found"), status: 200, code: "channel_not_found"},
		{name: "a refused payload is not retryable", token: true, handler: apiError("invalid_blocks"), status: 200, code: "invalid_blocks"},
		{name: "Slack's ratelimited code is retryable", token: true, handler: apiError("ratelimited"), retryable: true, status: 200, code: "ratelimited"},
		{name: "Slack's internal_error code is retryable", token: true, handler: apiError("internal_error"), retryable: true, status: 200, code: "internal_error"},
		{name: "the API's 502 is retryable", token: true, handler: status(502, "<html>bad gateway</html>"), retryable: true, status: 502},
		{name: "the API's 429 is retryable after the wait", token: true, handler: status(429, "", "Retry-After", "2"), retryable: true, status: 429, retryAfter: 2 * time.Second},
		{
			name: "a connection closed without an answer is retryable",
			handler: func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			},
			retryable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := server(t, tt.handler)
			s := webhookSender(t, srv.URL)
			if tt.token {
				s = tokenSender(t, srv.URL+"/api/")
			}
			err := s.Send(context.Background(), rollback())
			e := checkSendError(t, err)
			if calls.Load() != 1 {
				t.Errorf("server got %d requests: Send must make exactly one attempt", calls.Load())
			}
			if e.Retryable != tt.retryable || IsRetryable(err) != tt.retryable {
				t.Errorf("retryable = %v (IsRetryable %v), want %v: %v", e.Retryable, IsRetryable(err), tt.retryable, err)
			}
			if e.Status != tt.status || e.Code != tt.code {
				t.Errorf("status %d code %q, want %d %q", e.Status, e.Code, tt.status, tt.code)
			}
			if e.RetryAfter != tt.retryAfter || RetryAfter(err) != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.retryAfter)
			}
		})
	}
}

func TestSendErrorsNeverCarryTheSecrets(t *testing.T) {
	// A port that refuses: listen, note the address, stop listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	hang := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-hang:
		}
	})
	t.Cleanup(func() { close(hang) })
	failing, _ := server(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no_service", 404) })

	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()

	tests := []struct {
		name   string
		sender func(t *testing.T) *Sender
		ctx    func() context.Context
		is     error // errors.Is must still find it
	}{
		{
			name:   "a webhook at an unreachable address",
			sender: func(t *testing.T) *Sender { return webhookSender(t, refused) },
			ctx:    context.Background,
		},
		{
			name:   "a webhook on a failing server",
			sender: func(t *testing.T) *Sender { return webhookSender(t, failing.URL) },
			ctx:    context.Background,
		},
		{
			name:   "a webhook whose context has expired",
			sender: func(t *testing.T) *Sender { return webhookSender(t, slow.URL) },
			ctx:    func() context.Context { return expired },
			is:     context.DeadlineExceeded,
		},
		{
			name:   "a webhook cancelled while waiting for the answer",
			sender: func(t *testing.T) *Sender { return webhookSender(t, slow.URL) },
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				go func() { <-arrived; cancel() }()
				return ctx
			},
			is: context.Canceled,
		},
		{
			name:   "a token at an unreachable address",
			sender: func(t *testing.T) *Sender { return tokenSender(t, refused+"/api/") },
			ctx:    context.Background,
		},
		{
			name:   "a token whose context has expired",
			sender: func(t *testing.T) *Sender { return tokenSender(t, slow.URL+"/api/") },
			ctx:    func() context.Context { return expired },
			is:     context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sender(t).Send(tt.ctx(), rollback())
			e := checkSendError(t, err)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false: the cause is lost", err, tt.is)
			}
			if tt.is != nil && !e.Retryable {
				t.Errorf("%v: want retryable", err)
			}
		})
	}
}

// checkSendError checks what every Send error must be: an *Error that
// says where and what, with no secret in its text, its %+v or anywhere
// in its chain.
func checkSendError(t *testing.T, err error) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("Send error %T is not an *Error: %v", err, err)
	}
	texts := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		texts = append(texts, u.Error(), fmt.Sprintf("%#v", u))
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		texts = append(texts, ue.URL)
	}
	for _, s := range texts {
		for _, secret := range []string{"s3cret", secretPath, secretToken, "T0AAAAAAA/B0BBBBBBB"} {
			if strings.Contains(s, secret) {
				t.Errorf("error leaks %q: %s", secret, s)
			}
		}
	}
	for _, want := range []string{"RolledBack", "shop/checkout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !strings.Contains(err.Error(), "/services/***") && !strings.Contains(err.Error(), "channel #rollouts") {
		t.Errorf("error %q does not say where it was sending", err)
	}
	return e
}

func TestIsRetryableTakesRawSlackErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil is not", nil, false},
		{"a 5xx is", slack.StatusCodeError{Code: 502, Status: "502 Bad Gateway"}, true},
		{"a 429 is", slack.StatusCodeError{Code: 429, Status: "429 Too Many Requests"}, true},
		{"a 4xx is not", slack.StatusCodeError{Code: 403, Status: "403 Forbidden"}, false},
		{"a rate limit is", fmt.Errorf("post: %w", &slack.RateLimitedError{RetryAfter: time.Second}), true},
		{"invalid_auth is not", slack.SlackErrorResponse{Err: "invalid_auth"}, false},
		{"service_unavailable is", slack.SlackErrorResponse{Err: "service_unavailable"}, true},
		{"a transport error is", &url.Error{Op: "Post", URL: "https://x", Err: errors.New("connection reset")}, true},
		{"a deadline is", context.DeadlineExceeded, true},
		{"anything else is not", errors.New("marshal failed"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsRetryable(tt.err); got != tt.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if got := RetryAfter(&slack.RateLimitedError{RetryAfter: 3 * time.Second}); got != 3*time.Second {
		t.Errorf("RetryAfter(rate limit 3s) = %v", got)
	}
}

func TestNewRefusesAnInvalidConfig(t *testing.T) {
	_, err := New(Config{WebhookURL: "ftp://hooks.slack.com/services/" + secretPath})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "webhook-url") {
		t.Fatalf("New(ftp URL) = %v, want an error naming webhook-url without the secret", err)
	}
}
