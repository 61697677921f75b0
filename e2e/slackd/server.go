package slackd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// The credentials the server accepts. They look like Slack's, so that
// code redacting them (webhooks/slack) is exercised on realistic shapes.
const (
	webhookPath = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
	apiPrefix   = "/api/"
	token       = "xoxb-0000000000-0000000000-sandboxsandboxsandbox"
)

// Server is a running Slack stand-in. Its methods are safe for concurrent
// use.
type Server struct {
	base string // http://127.0.0.1:PORT
	srv  *http.Server
	done chan error // Serve's return

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	messages []Message
	// arrived is closed, and replaced, whenever a message is accepted:
	// WaitFor waits on it instead of polling.
	arrived    chan struct{}
	failures   int
	failNext   int
	nextStatus int
	failAll    int // status while failing until cleared, 0 when not
	seq        int64
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves
// until Close.
func Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("slackd: listen on %s: %w", addr, err)
	}
	s := &Server{
		base:    "http://" + ln.Addr().String(),
		done:    make(chan error, 1),
		arrived: make(chan struct{}),
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// WebhookURL is the incoming webhook's URL.
func (s *Server) WebhookURL() string { return s.base + webhookPath }

// APIURL is the Web API base, for slack.OptionAPIURL (and
// webhooks/slack.Config.APIURL).
func (s *Server) APIURL() string { return s.base + apiPrefix }

// Token is the one bot token chat.postMessage accepts.
func (s *Server) Token() string { return token }

// Messages returns everything accepted so far, in order of arrival.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = m.clone()
	}
	return out
}

// WaitFor returns the first message, accepted before or after the call,
// for which match is true, or ctx's error once it is done. A nil match
// takes any message.
func (s *Server) WaitFor(ctx context.Context, match func(Message) bool) (Message, error) {
	seen := 0
	for {
		s.mu.Lock()
		if seen > len(s.messages) {
			seen = 0 // Reset meanwhile
		}
		fresh := s.messages[seen:]
		seen = len(s.messages)
		arrived := s.arrived
		s.mu.Unlock()
		for _, m := range fresh {
			if match == nil || match(m) {
				return m.clone(), nil
			}
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("slackd: waiting for a message (%d received): %w", seen, ctx.Err())
		}
	}
}

// FailNext answers the next n requests, whatever they are, with status
// (a 429 carries "Retry-After: 1"), counting them as failures.
func (s *Server) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.nextStatus = n, status
}

// FailUntilCleared answers every request with status until Clear.
func (s *Server) FailUntilCleared(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAll = status
}

// Clear stops injecting failures, those FailNext had left too.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAll, s.failNext = 0, 0
}

// Failures counts the requests answered with an injected failure.
func (s *Server) Failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures
}

// Reset forgets the messages and failures and stops injecting failures,
// for the next test on a shared server.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages, s.failures = nil, 0
	s.failAll, s.failNext = 0, 0
}

// Close stops the server at once, dropping requests in flight. Later
// calls return the first one's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.srv.Close(); err != nil {
			s.closeErr = fmt.Errorf("slackd %s: close: %w", s.base, err)
			return
		}
		if err := <-s.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.closeErr = fmt.Errorf("slackd %s: serve: %w", s.base, err)
		}
	})
	return s.closeErr
}

// injected returns the status to fail the current request with, if a
// failure is due, and counts it.
func (s *Server) injected() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.failNext > 0:
		s.failNext--
		s.failures++
		return s.nextStatus, true
	case s.failAll != 0:
		s.failures++
		return s.failAll, true
	}
	return 0, false
}

// accept records m and stamps it, returning its ts.
func (s *Server) accept(m Message) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	m.At = time.Now()
	ts := fmt.Sprintf("%d.%06d", m.At.Unix(), s.seq%1_000_000)
	s.messages = append(s.messages, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
	return ts
}
