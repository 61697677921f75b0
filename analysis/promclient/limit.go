package promclient

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	promapi "github.com/prometheus/client_golang/api"
)

// DefaultMaxAnswerBytes bounds the body of one answer from Prometheus when
// New is given no WithMaxAnswerBytes. A check's answer is one series, a
// few hundred bytes; a query that forgot its sum() over a big fleet can
// answer tens of megabytes, which client_golang reads whole and decodes
// at some ten times that in memory, for a result that is refused anyway.
const DefaultMaxAnswerBytes = 4 << 20

// ErrTooLarge reports an answer whose body is over the client's limit.
// The query's error wraps it together with analysis.ErrBadResponse.
var ErrTooLarge = errors.New("answer too large")

// Option changes how New builds a Client.
type Option func(*options)

type options struct {
	maxAnswerBytes int64
}

// WithMaxAnswerBytes sets the most bytes of one answer's body that are
// read: past them the query fails with ErrTooLarge. Zero means
// DefaultMaxAnswerBytes.
func WithMaxAnswerBytes(n int64) Option {
	return func(o *options) { o.maxAnswerBytes = n }
}

// limitAnswers makes cfg's transport fail the read of any answer body
// past max bytes, keeping the caller's Client or RoundTripper (TLS,
// credentials) underneath.
func limitAnswers(cfg promapi.Config, max int64) promapi.Config {
	if cfg.Client != nil {
		client := *cfg.Client
		next := client.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		client.Transport = limitedTransport{next: next, max: max}
		cfg.Client = &client
		return cfg
	}
	next := cfg.RoundTripper
	if next == nil {
		next = promapi.DefaultRoundTripper
	}
	cfg.RoundTripper = limitedTransport{next: next, max: max}
	return cfg
}

// limitedTransport is a RoundTripper whose response bodies fail with
// ErrTooLarge once more than max bytes would be read.
type limitedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &limitedBody{body: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

// limitedBody reads body until left runs out, then fails: it reads one
// byte past the limit to tell an answer of exactly max bytes, which is
// fine, from a longer one.
type limitedBody struct {
	body      io.ReadCloser
	left, max int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p))-1 > b.left {
		p = p[:b.left+1]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		// The byte past the limit is not handed on.
		return n - 1, b.tooLarge()
	}
	return n, err
}

func (b *limitedBody) tooLarge() error {
	return fmt.Errorf("%w: more than the limit of %d bytes", ErrTooLarge, b.max)
}

func (b *limitedBody) Close() error { return b.body.Close() }
