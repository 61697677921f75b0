package slack

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/fledgehq/fledge/webhooks"
)

// DefaultTimeout bounds a Send whose context has no deadline, so that a
// Slack that accepts the connection and never answers cannot hold the
// delivery loop forever.
const DefaultTimeout = 30 * time.Second

// Sender posts notifications to one Slack destination. It makes one
// attempt per Send: retrying, with backoff and Retry-After, is the
// delivery loop's job, which keeps each notification in the Flight's
// status until it is delivered. A Sender is safe for concurrent use.
type Sender struct {
	cfg    Config
	client *http.Client // observes the answers' status
	api    *slack.Client
	red    redactor
}

// Option adjusts a Sender.
type Option func(*Sender)

// WithHTTPClient sends through c (its transport, proxy, TLS settings)
// instead of a default client. Leave its Timeout unset: Send's context
// bounds each attempt.
func WithHTTPClient(c *http.Client) Option {
	return func(s *Sender) {
		if c != nil {
			s.client = c
		}
	}
}

// New builds a Sender for c, validated.
func New(c Config, opts ...Option) (*Sender, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("slack config: %w", err)
	}
	s := &Sender{cfg: c, client: &http.Client{}}
	for _, o := range opts {
		o(s)
	}
	// A copy, so that the caller's client is not changed.
	client := *s.client
	client.Transport = observer{base: client.Transport}
	s.client = &client

	if c.WebhookURL != "" {
		u, _ := url.Parse(c.WebhookURL) // Validate parsed it
		red := redactURL(c.WebhookURL)
		pairs := []string{c.WebhookURL, red, u.String(), red}
		// The path past its first segment is the secret (/services/T/B/X):
		// hide it wherever it appears alone, and its last segment too,
		// unless it is too short to tell from ordinary words.
		if strings.Count(strings.Trim(u.Path, "/"), "/") > 0 {
			redPath := strings.TrimPrefix(red, u.Scheme+"://"+u.Host)
			pairs = append(pairs, u.EscapedPath(), redPath, u.Path, redPath)
			if last := u.Path[strings.LastIndex(u.Path, "/")+1:]; len(last) >= 8 {
				pairs = append(pairs, last, "***")
			}
		}
		if len(u.RawQuery) >= 8 {
			pairs = append(pairs, u.RawQuery, "***")
		}
		s.red = newRedactor(pairs...)
		return s, nil
	}
	s.red = newRedactor(c.Token, redactToken(c.Token), url.QueryEscape(c.Token), redactToken(c.Token))
	apiOpts := []slack.Option{slack.OptionHTTPClient(s.client)}
	if c.APIURL != "" {
		base := c.APIURL
		if !strings.HasSuffix(base, "/") {
			base += "/" // slack-go appends the method name as is
		}
		apiOpts = append(apiOpts, slack.OptionAPIURL(base))
	}
	s.api = slack.New(c.Token, apiOpts...)
	return s, nil
}

// Send posts n, laid out by Blocks, once, within ctx's deadline
// (DefaultTimeout if it has none). Its error is an *Error: see IsRetryable
// and RetryAfter. It logs nothing.
func (s *Sender) Send(ctx context.Context, n webhooks.Notification) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	text, blocks := Blocks(n)
	obs := &observed{}
	ctx = context.WithValue(ctx, observedKey{}, obs)
	var err error
	via := "webhook"
	if s.api == nil {
		err = slack.PostWebhookCustomHTTPContext(ctx, s.cfg.WebhookURL, s.client, &slack.WebhookMessage{
			Text:   text,
			Blocks: &slack.Blocks{BlockSet: blocks},
		})
	} else {
		via = "chat.postMessage"
		_, _, err = s.api.PostMessageContext(ctx, s.cfg.Channel,
			slack.MsgOptionText(text, false), // Blocks escaped it
			slack.MsgOptionBlocks(blocks...),
		)
	}
	if err == nil {
		return nil
	}
	status, retryAfter := obs.get()
	e := classify(err, status, retryAfter)
	e.Via = via
	e.cause = s.red.sanitize(err)
	e.msg = s.red.redact(fmt.Sprintf("slack %s %s: send %s notification for %s: %v", via, s.destination(), orNone(n.Event), app(n), err))
	return e
}

// destination says where the sender posts, redacted, for errors.
func (s *Sender) destination() string {
	if s.api == nil {
		return redactURL(s.cfg.WebhookURL)
	}
	return "channel " + s.cfg.Channel
}

// String describes the sender with its secrets redacted.
func (s Sender) String() string { return "slack sender: " + s.cfg.String() }

// Format prints String for every verb: fmt prints a struct's unexported
// fields raw, Config's methods notwithstanding.
func (s Sender) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// LogValue is String, for slog.
func (s Sender) LogValue() slog.Value { return slog.StringValue(s.String()) }

// observed is the last answer's status and Retry-After, which slack-go
// does not always pass on.
type observed struct {
	mu         sync.Mutex
	status     int
	retryAfter string
}

func (o *observed) get() (int, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.status, o.retryAfter
}

type observedKey struct{}

// observer records each answer's status in the request's observed.
type observer struct{ base http.RoundTripper }

func (t observer) RoundTrip(r *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if o, ok := r.Context().Value(observedKey{}).(*observed); ok && resp != nil {
		o.mu.Lock()
		o.status, o.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
		o.mu.Unlock()
	}
	return resp, err
}
