package slackd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/slackd"
	"github.com/fledgehq/fledge/webhooks"
	slacknotify "github.com/fledgehq/fledge/webhooks/slack"
)

func rollback() webhooks.Notification {
	v := 0.912345678
	return webhooks.Notification{
		Event: "RolledBack", Name: "checkout", Namespace: "shop", Revision: "7f9c4d",
		FromImages: []string{"shop/checkout:v1"}, ToImages: []string{"shop/checkout:v2"},
		Plan: []int32{10, 25, 50}, Step: 1, Weight: 25,
		Reason: "success-rate 0.912346 is below the minimum of 0.99",
		Checks: []analysis.Check{{
			Metric: "success-rate", Value: &v, Threshold: ">= 0.99", Samples: 1834,
			Outcome: analysis.Fail, Message: "0.912346 is below the minimum of 0.99",
		}},
		At: time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC),
	}
}

// modes are the two ways fledge posts, each configured as its Secret
// would be for this server.
func modes(s *slackd.Server) map[string]slacknotify.Config {
	return map[string]slacknotify.Config{
		"webhook": {WebhookURL: s.WebhookURL()},
		"api":     {Token: s.Token(), Channel: "#rollouts", APIURL: s.APIURL()},
	}
}

func startServer(t *testing.T) *slackd.Server {
	t.Helper()
	s, err := slackd.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSender(t *testing.T, c slacknotify.Config) *slacknotify.Sender {
	t.Helper()
	sender, err := slacknotify.New(c)
	if err != nil {
		t.Fatalf("New(%v): %v", c, err)
	}
	return sender
}

func TestSenderDeliversToTheSandbox(t *testing.T) {
	s := startServer(t)
	for via, cfg := range modes(s) {
		t.Run("through the "+via, func(t *testing.T) {
			s.Reset()
			if err := newSender(t, cfg).Send(context.Background(), rollback()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := s.Messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.Via != via {
				t.Errorf("arrived via %q, want %q", m.Via, via)
			}
			if via == "api" && m.Channel != "#rollouts" {
				t.Errorf("channel %q, want #rollouts", m.Channel)
			}
			for _, fact := range []string{
				"Rolled back: checkout", "success-rate", "0.9123", ">= 0.99", "1834 samples",
				"step 2/3 (25%)", "shop/checkout:v2", "shop/checkout:v1",
				"below the minimum of 0.99", "2026-03-01 12:30 UTC",
			} {
				if !strings.Contains(m.BlockText(), fact) {
					t.Errorf("blocks do not show %q; they read:\n%s", fact, m.BlockText())
				}
			}
			if !m.Contains("Rolled back shop/checkout at step 2/3 (25%)") {
				t.Errorf("text %q lacks the fallback line", m.Text)
			}
		})
	}
}

func TestSenderRetriesAfterInjectedFailures(t *testing.T) {
	s := startServer(t)
	for via, cfg := range modes(s) {
		t.Run("through the "+via, func(t *testing.T) {
			s.Reset()
			sender := newSender(t, cfg)

			s.FailNext(1, 500)
			err := sender.Send(context.Background(), rollback())
			if !slacknotify.IsRetryable(err) {
				t.Fatalf("after a 500: %v, want a retryable error", err)
			}
			if s.Failures() != 1 || len(s.Messages()) != 0 {
				t.Fatalf("after a 500: %d failures, %d messages; want 1, 0 (one attempt, not retried)", s.Failures(), len(s.Messages()))
			}

			s.FailNext(1, 429)
			err = sender.Send(context.Background(), rollback())
			if !slacknotify.IsRetryable(err) || slacknotify.RetryAfter(err) != time.Second {
				t.Fatalf("after a 429: %v (retry after %v), want retryable after 1s", err, slacknotify.RetryAfter(err))
			}

			if err := sender.Send(context.Background(), rollback()); err != nil {
				t.Fatalf("once the failures are spent: %v", err)
			}
			if s.Failures() != 2 || len(s.Messages()) != 1 {
				t.Fatalf("%d failures, %d messages; want 2, 1", s.Failures(), len(s.Messages()))
			}
		})
	}
}

func TestSenderHoldsThroughAnOutage(t *testing.T) {
	s := startServer(t)
	sender := newSender(t, slacknotify.Config{WebhookURL: s.WebhookURL()})
	s.FailUntilCleared(503)
	for i := range 3 {
		if err := sender.Send(context.Background(), rollback()); !slacknotify.IsRetryable(err) {
			t.Fatalf("attempt %d during the outage: %v, want retryable", i+1, err)
		}
	}
	s.Clear()
	if err := sender.Send(context.Background(), rollback()); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if s.Failures() != 3 || len(s.Messages()) != 1 {
		t.Fatalf("%d failures, %d messages; want 3, 1", s.Failures(), len(s.Messages()))
	}
}

func TestSenderErrorsThatRetryingWillNotFix(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		name string
		cfg  slacknotify.Config
		code string
	}{
		{"a wrong token", slacknotify.Config{Token: "xoxb-1-2-wrongwrongwrong", Channel: "#rollouts", APIURL: s.APIURL()}, "invalid_auth"},
		{"a revoked webhook", slacknotify.Config{WebhookURL: strings.Replace(s.WebhookURL(), "XXXX", "YYYY", 1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Reset()
			err := newSender(t, tt.cfg).Send(context.Background(), rollback())
			e, ok := errors.AsType[*slacknotify.Error](err)
			if !ok || e.Retryable || e.Code != tt.code {
				t.Fatalf("Send = %v, want a non-retryable *Error with code %q", err, tt.code)
			}
			if strings.Contains(err.Error(), "wrongwrong") || strings.Contains(err.Error(), "YYYY") {
				t.Errorf("error leaks the secret: %v", err)
			}
			if len(s.Messages()) != 0 {
				t.Errorf("a refused message was recorded")
			}
		})
	}
}

func TestWebhookAndAPIShowTheSame(t *testing.T) {
	s := startServer(t)
	for _, cfg := range modes(s) {
		if err := newSender(t, cfg).Send(context.Background(), rollback()); err != nil {
			t.Fatal(err)
		}
	}
	msgs := s.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if a, b := msgs[0].BlockText(), msgs[1].BlockText(); a != b || msgs[0].Text != msgs[1].Text {
		t.Errorf("the two ways show different messages:\n%s\n---\n%s", a, b)
	}
}
