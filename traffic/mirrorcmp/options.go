package mirrorcmp

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The defaults of Options' zero fields.
const (
	DefaultMaxBody     = 1 << 20 // 1 MiB
	DefaultSample      = 1.0
	DefaultMaxInFlight = 64
	DefaultTimeout     = 10 * time.Second
)

// Options configure the comparing proxy. The zero value of every field but
// Canary and Stable means its default.
type Options struct {
	// Canary and Stable are the base URLs of the two upstreams, such as
	// http://web-canary.shop.svc:8080: scheme http or https, a host, and
	// at most a path prefix; a copy's path and query are appended.
	Canary, Stable *url.URL

	// MaxBody bounds the bytes of each body the proxy holds or hashes
	// (default 1 MiB). An answer's body longer than that is compared by
	// its first MaxBody bytes and its total length alone, so two long
	// bodies that differ only past MaxBody count as the same. A copy
	// whose request body is longer is not forwarded (counted dropped):
	// its body is held whole to be replayed to both upstreams, and at most
	// MaxInFlight such bodies are held at once.
	MaxBody int64

	// Sample is the share of the copies compared, in (0, 1] (default 1).
	// The others are answered 202 at once, forwarded to neither upstream,
	// and counted skipped. It lightens the second load the comparison puts
	// on stable: every compared copy is a request stable serves twice.
	Sample float64

	// MaxInFlight bounds the comparisons under way at once (default 64).
	// A copy that arrives when that many are under way is answered 202
	// and counted dropped: copies are never queued, since a backlog would
	// grow without bound behind a slow upstream.
	MaxInFlight int

	// Timeout bounds each upstream call, body read included (default
	// 10s). A call that takes longer is Unanswered.
	Timeout time.Duration

	// Client makes the upstream calls (default: a client of its own with
	// keep-alive connections enough for MaxInFlight). A given client is
	// used through a shallow copy that neither follows redirects (a 3xx
	// is compared as it is) nor keeps cookies (copies from different
	// users must not share them).
	Client *http.Client

	// Registerer registers fledge_mirror_comparisons_total; nil registers
	// nothing (for tests).
	Registerer prometheus.Registerer
}

// withDefaults returns o with its defaults filled in, or an error naming
// every field that is invalid.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	for _, u := range []struct {
		field string
		url   *url.URL
	}{{"Canary", o.Canary}, {"Stable", o.Stable}} {
		if err := checkBaseURL(u.url); err != nil {
			errs = append(errs, fmt.Errorf("mirrorcmp: Options.%s: %w", u.field, err))
		}
	}
	if o.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("mirrorcmp: Options.MaxBody: %d bytes, want 0 (the default, %d) or more", o.MaxBody, DefaultMaxBody))
	}
	if math.IsNaN(o.Sample) || o.Sample < 0 || o.Sample > 1 {
		errs = append(errs, fmt.Errorf("mirrorcmp: Options.Sample: %v, want a share in (0, 1], or 0 for the default (%v)", o.Sample, DefaultSample))
	}
	if o.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("mirrorcmp: Options.MaxInFlight: %d, want 0 (the default, %d) or more", o.MaxInFlight, DefaultMaxInFlight))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("mirrorcmp: Options.Timeout: %v, want 0 (the default, %v) or more", o.Timeout, DefaultTimeout))
	}
	if len(errs) > 0 {
		return o, errors.Join(errs...)
	}

	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Sample == 0 {
		o.Sample = DefaultSample
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = defaultClient(o.MaxInFlight, o.Timeout)
	} else {
		c := *o.Client
		o.Client = &c
	}
	o.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.Client.Jar = nil
	return o, nil
}

// checkBaseURL accepts an absolute http or https URL that a copy's path
// and query can be appended to.
func checkBaseURL(u *url.URL) error {
	switch {
	case u == nil:
		return errors.New("missing, want the upstream's base URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme %q, want http or https", u.Redacted(), u.Scheme)
	case u.Host == "":
		return fmt.Errorf("%q: no host", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%q: has a query, want the copy's alone", u.Redacted())
	case u.Fragment != "":
		return fmt.Errorf("%q: has a fragment", u.Redacted())
	}
	return nil
}

// defaultClient is the Client when none is given. Its per-call bound is
// the Timeout the handler sets on each call's context; its own timeouts
// bound the steps before a call's first byte, so that an upstream that
// does not accept connections fails fast, and keep as many idle
// connections per upstream as there can be comparisons at once.
func defaultClient(maxInFlight int, timeout time.Duration) *http.Client {
	connect := min(timeout, 5*time.Second)
	return &http.Client{
		Transport: &http.Transport{
			// No Proxy: the upstreams are in the cluster, and an
			// HTTP_PROXY meant for the way out must not carry copies.
			DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   connect,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   maxInFlight,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}
