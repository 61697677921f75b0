package hookclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fledgehq/fledge/webhooks"
)

// Defaults for a Call and a Client.
const (
	DefaultTimeout = 10 * time.Second
	DefaultMaxBody = 1 << 20
)

// Call is one hook call as the engine asks for it.
type Call struct {
	// URL is the hook's endpoint from the admin-written policy: http or
	// https, nothing else.
	URL string
	// Timeout bounds each attempt, body read included (DefaultTimeout when
	// zero or negative).
	Timeout time.Duration
	// Retries are the attempts made after the first when it got no answer
	// or a 5xx or 429, with a short exponential backoff, all within the
	// context given to Do.
	Retries int
	// Secret signs the call (HeaderSignature). Empty leaves it unsigned.
	Secret []byte
	// AllowLinkLocal is the policy's explicit opt-in to link-local and
	// cloud-metadata addresses, refused otherwise (see dial.go).
	AllowLinkLocal bool
	// Networks are the policy file's hookNetworks: the private addresses
	// the call may reach, all refused otherwise, and the loopback ones
	// when an entry is loopback itself (see dial.go).
	Networks []netip.Prefix
	Payload  webhooks.Payload
}

// Outcome is what a call came to.
type Outcome string

const (
	// OK: the hook answered 2xx (with a valid load result, if it sent one).
	OK Outcome = "ok"
	// Rejected: the hook answered, but not 2xx.
	Rejected Outcome = "rejected"
	// Error: no usable answer: a transport error, a timeout, a refused
	// address or redirect, a body too large, a malformed load result.
	Error Outcome = "error"
)

// Result is everything Do learned. The engine records it; nothing in it is
// secret.
type Result struct {
	Outcome Outcome
	// Status is the last HTTP status received, 0 when none.
	Status int
	// Message says what happened in one line for people: the method, the
	// URL without credentials or query, the status or error, and the
	// start of the body, sanitized.
	Message string
	// Body is the last response body, at most the client's MaxBody bytes;
	// nil when there was none or it was larger.
	Body []byte
	// Load is the load-test result a 2xx answer carried, nil if none.
	Load     *webhooks.LoadResult
	Attempts int
	// Duration is the whole call's, retries and backoff included.
	Duration time.Duration
}

// Client calls hooks. It is safe for concurrent use and reuses
// connections; make one and share it.
type Client struct {
	mu sync.Mutex
	// clients holds an http.Client per address policy a call asked for
	// (AllowLinkLocal and Networks, see addrPolicy.key), each with its
	// own transport, so that their connection pools never mix.
	clients  map[string]*http.Client
	denied   []netip.AddrPort
	tls      *tls.Config
	resolver *net.Resolver
	now      func() time.Time
	maxBody  int64
	backoff  [2]time.Duration // first, max
}

// maxClients bounds the transports kept: each distinct set of networks
// has one, and a policy file's reloads may leave some unused.
const maxClients = 16

// Option configures a Client.
type Option func(*options)

type options struct {
	now      func() time.Time
	maxBody  int64
	backoff  [2]time.Duration
	tls      *tls.Config
	resolver *net.Resolver
	denied   []netip.AddrPort
}

// WithNow sets the clock signatures are timestamped with.
func WithNow(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaxBody sets the largest response body read (DefaultMaxBody when
// zero or negative).
func WithMaxBody(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithBackoff sets the wait before the first retry, doubled at each
// further retry up to limit (200ms and 2s by default).
func WithBackoff(first, limit time.Duration) Option {
	return func(o *options) { o.backoff = [2]time.Duration{first, limit} }
}

// WithTLSConfig sets the TLS configuration for https hooks, for a private
// CA say. It is cloned.
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithDeniedAddrs refuses every call to these addresses, whatever the
// call allows: the cluster's API server (see APIServerAddrs), and its
// endpoints where they are known. A port of 0 refuses every port of the
// address.
func WithDeniedAddrs(addrs ...netip.AddrPort) Option {
	return func(o *options) { o.denied = append(o.denied, addrs...) }
}

// withResolver sets the resolver, for tests that need a name to resolve
// to an address of their choosing.
func withResolver(r *net.Resolver) Option { return func(o *options) { o.resolver = r } }

// New returns a client with the options applied.
func New(opts ...Option) *Client {
	o := options{now: time.Now, maxBody: DefaultMaxBody, backoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.maxBody <= 0 || o.maxBody >= 1<<40 {
		o.maxBody = DefaultMaxBody
	}
	return &Client{
		clients: map[string]*http.Client{}, denied: canonicalDenied(o.denied), tls: o.tls, resolver: o.resolver,
		now: o.now, maxBody: o.maxBody, backoff: o.backoff,
	}
}

// CloseIdleConnections closes the connections kept for reuse, at shutdown.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.clients {
		hc.CloseIdleConnections()
	}
}

// httpClient returns the client for a call's address policy, made on
// first use.
func (c *Client) httpClient(call Call) *http.Client {
	p := &addrPolicy{allowLinkLocal: call.AllowLinkLocal, networks: canonicalNetworks(call.Networks), denied: c.denied}
	key := p.key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.clients[key]; ok {
		return hc
	}
	if len(c.clients) >= maxClients {
		// Start afresh: calls under way keep the client they hold, and
		// only idle connections are closed.
		for k, hc := range c.clients {
			hc.CloseIdleConnections()
			delete(c.clients, k)
		}
	}
	hc := &http.Client{Transport: newTransport(p, c.tls, c.resolver), CheckRedirect: checkRedirect}
	c.clients[key] = hc
	return hc
}

// Do makes the call and reports how it went. It never panics and has no
// error to return: a hook that cannot be reached is an outcome the engine
// records and decides upon, like any other answer.
func (c *Client) Do(ctx context.Context, call Call) Result {
	start := time.Now()
	res := c.do(ctx, call)
	res.Duration = time.Since(start)
	return res
}

func (c *Client) do(ctx context.Context, call Call) Result {
	u, err := parseURL(call.URL)
	if err != nil {
		return Result{Outcome: Error, Message: err.Error()}
	}
	head := "POST " + displayURL(u)
	if ctx == nil {
		return Result{Outcome: Error, Message: head + ": no context"}
	}
	body, err := json.Marshal(call.Payload)
	if err != nil {
		return Result{Outcome: Error, Message: fmt.Sprintf("%s: encode payload: %v", head, err)}
	}
	timeout := call.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hc := c.httpClient(call)
	var res Result
	var note string
	for n := 0; ; n++ {
		var retry bool
		res, retry = c.attempt(ctx, hc, call, body, timeout)
		res.Attempts = n + 1
		if !retry || n >= call.Retries {
			break
		}
		if err := c.wait(ctx, n); err != nil {
			note = fmt.Sprintf("; gave up retrying: %v", context.Cause(ctx))
			break
		}
	}
	res.Message = head + ": " + res.Message
	switch {
	case res.Attempts > 1:
		res.Message += fmt.Sprintf(" (%d attempts%s)", res.Attempts, note)
	case note != "":
		res.Message += fmt.Sprintf(" (1 attempt%s)", note)
	}
	return res
}

// parseURL checks a hook URL: absolute, http or https, with a host.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not url.Error's message: it repeats the URL, credentials and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("hook URL is not valid: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("hook URL %s refused: scheme %q is not http or https", displayURL(u), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("hook URL %s refused: no host", displayURL(u))
	}
	if numericHost(u.Hostname()) {
		return nil, fmt.Errorf("hook URL %s refused: host %q reads as an IP address in a shortened, decimal, octal or hex form, "+
			"which resolvers read differently: write the address in its usual form", displayURL(u), u.Hostname())
	}
	return u, nil
}

// numericHost reports whether a host that is no IP address in its usual
// form would still be read as one by some resolver: 127.1, 2130706433,
// 0177.0.0.1, 0x7f.0.0.1 are all 127.0.0.1 to inet_aton, which glibc's
// getaddrinfo uses, while Go's own resolver refuses them. No top-level
// domain is numeric, so no name is lost.
func numericHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if len(last) > 1 && (last[:2] == "0x" || last[:2] == "0X") {
		last = last[2:]
		return strings.Trim(last, "0123456789abcdefABCDEF") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// attempt makes one request. Its message lacks the "POST url: " head. It
// reports whether another attempt could get a different answer.
func (c *Client) attempt(ctx context.Context, hc *http.Client, call Call, body []byte, timeout time.Duration) (Result, bool) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, call.URL, bytes.NewReader(body))
	if err != nil {
		return Result{Outcome: Error, Message: "build request: " + oneLine([]byte(err.Error()), 200)}, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fledge")
	req.Header.Set(webhooks.HeaderDelivery, call.Payload.DeliveryID)
	req.Header.Set(webhooks.HeaderType, string(call.Payload.Type))
	if len(call.Secret) > 0 {
		// Signed at each attempt: a retry seconds later must still be
		// within the receiver's tolerance.
		req.Header.Set(webhooks.HeaderSignature, webhooks.Sign(call.Secret, c.now(), body))
	}
	resp, err := hc.Do(req)
	if err != nil {
		res := Result{Outcome: Error}
		if resp != nil { // a redirect not followed
			res.Status = resp.StatusCode
		}
		var retry bool
		res.Message, retry = describe(ctx, actx, timeout, err)
		return res, retry
	}
	defer resp.Body.Close()
	return c.answer(ctx, actx, timeout, resp)
}

// wait sleeps before retry n+1, or until ctx ends.
func (c *Client) wait(ctx context.Context, n int) error {
	t := time.NewTimer(backoff(c.backoff[0], c.backoff[1], n))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is the wait before retry n+1: first, doubled n times, at most
// limit.
func backoff(first, limit time.Duration, n int) time.Duration {
	d := first
	for i := 0; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
