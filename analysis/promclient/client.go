package promclient

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/fledgehq/fledge/analysis"
)

// DefaultQueryTimeout bounds one query when New is given none. A
// check's query reads a few minutes of a few series; one that takes longer
// than this is stuck, and the rollout should hold and say so rather than
// wait with it.
const DefaultQueryTimeout = 30 * time.Second

// Client is a Querier over Prometheus's HTTP API. It is safe for
// concurrent use.
type Client struct {
	api     promv1.API
	timeout time.Duration
}

// New returns a Querier for the Prometheus server cfg points at:
// cfg.Address is its base URL, and cfg.RoundTripper (or cfg.Client), if
// set, carries TLS settings and credentials. timeout bounds each query,
// both here and as Prometheus's own query timeout; zero means
// DefaultQueryTimeout. Each answer's body is read up to a limit,
// DefaultMaxAnswerBytes unless an option says otherwise.
func New(cfg promapi.Config, timeout time.Duration, opts ...Option) (*Client, error) {
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus address %q: want an http or https URL", cfg.Address)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("prometheus query timeout %s: must not be negative", timeout)
	}
	if timeout == 0 {
		timeout = DefaultQueryTimeout
	}
	o := options{maxAnswerBytes: DefaultMaxAnswerBytes}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.maxAnswerBytes < 0:
		return nil, fmt.Errorf("prometheus answer limit %d bytes: must not be negative", o.maxAnswerBytes)
	case o.maxAnswerBytes == 0:
		o.maxAnswerBytes = DefaultMaxAnswerBytes
	}
	client, err := promapi.NewClient(limitAnswers(cfg, o.maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", cfg.Address, err)
	}
	return &Client{api: promv1.NewAPI(client), timeout: timeout}, nil
}

// Ping asks Prometheus the cheapest query there is, vector(1), through
// the same address, TLS settings, credentials and headers as the checks'
// queries: nil means the checks can be measured, an error says why not
// (as Query's do). It answers whether the whole path works, which
// Prometheus's /-/ready cannot (a Thanos or Mimir query frontend has no
// such endpoint, and a proxy before it may let /-/ready through but not
// queries).
func (p *Client) Ping(ctx context.Context) error {
	_, err := p.Query(ctx, "vector(1)", time.Now())
	return err
}

// Query runs an instant query evaluated at at, and returns its single
// finite value. Errors name the query and wrap one of the Err* values.
func (p *Client) Query(ctx context.Context, query string, at time.Time) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// Infos (the third result) are hints such as "metric might not be a
	// counter": worth a look by whoever wrote the query, not a reason to
	// distrust the value.
	v, warnings, _, err := p.api.Query(ctx, query, at, promv1.WithTimeout(p.timeout))
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", query, classify(err))
	}
	if len(warnings) > 0 {
		return 0, fmt.Errorf("query %q: %w: %s", query, analysis.ErrWarnings, strings.Join(warnings, "; "))
	}
	f, err := single(v)
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", query, err)
	}
	return f, nil
}

// classify wraps a client error with the Err* value that says what
// happened. client_golang returns *promv1.Error when Prometheus (or a
// proxy before it) answered, and the transport's error when nothing did.
func classify(err error) error {
	if errors.Is(err, ErrTooLarge) {
		// Checked first: the read failed on our side, not the network's.
		return fmt.Errorf("%w: %w", analysis.ErrBadResponse, err)
	}
	var apiErr *promv1.Error
	if errors.As(err, &apiErr) {
		typ, msg, body := apiErr.Type, apiErr.Msg, strings.TrimSpace(apiErr.Detail)
		// client_golang decodes API errors only for 400 and 422; Prometheus
		// answers its own timeouts and cancellations with 503 and the same
		// JSON, which it then leaves in Detail.
		var answer struct {
			Status    string           `json:"status"`
			ErrorType promv1.ErrorType `json:"errorType"`
			Error     string           `json:"error"`
		}
		if json.Unmarshal([]byte(body), &answer) == nil && answer.Status == "error" && answer.ErrorType != "" {
			typ, msg, body = answer.ErrorType, answer.Error, ""
		}
		detail := string(typ) + ": " + msg
		if body != "" {
			detail += ": " + truncate(body, 200)
		}
		if typ == promv1.ErrClient && (strings.HasSuffix(msg, " 401") || strings.HasSuffix(msg, " 403")) {
			// Prometheus has no authentication of its own: a 401 or 403
			// comes from what guards it (an auth proxy, Mimir's or
			// Thanos's gateway), and the fix is in the credentials.
			detail += " (Prometheus, or a proxy before it, refused the credentials sent, or their absence)"
		}
		switch typ {
		case promv1.ErrTimeout:
			return fmt.Errorf("%w: %s", analysis.ErrTimeout, detail)
		case promv1.ErrBadResponse:
			return fmt.Errorf("%w: %s", analysis.ErrBadResponse, detail)
		}
		return fmt.Errorf("%w: %s", analysis.ErrQueryFailed, detail)
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		// The caller gave up (shutdown, lost leadership): say so plainly.
		return fmt.Errorf("canceled: %w", err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("%w: %w", analysis.ErrTimeout, err)
	}
	if hint := tlsHint(err); hint != "" {
		return fmt.Errorf("%w: %s: %w", analysis.ErrUnreachable, hint, err)
	}
	return fmt.Errorf("%w: %w", analysis.ErrUnreachable, err)
}

// tlsHint says in plain words why a TLS handshake with Prometheus failed,
// or "" if err is no such failure. The transport's own words (x509:
// certificate signed by unknown authority) name the symptom; the hint
// names the setting to look at.
func tlsHint(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		remote    *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "TLS: Prometheus's certificate is not signed by a CA this client trusts (is the CA bundle the one that issued it?)"
	case errors.As(err, &hostname):
		return "TLS: Prometheus's certificate does not name the host asked for (give the name it does hold as the TLS server name, or use that name in the URL)"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "TLS: Prometheus's certificate has expired or is not valid yet"
	case errors.As(err, &remote) && remote.Op == "remote error" && strings.Contains(remote.Err.Error(), "certificate"):
		// An alert Prometheus sent: bad_certificate, unknown_ca or
		// certificate_required (crypto/tls keeps the alert's type
		// unexported, so its text is all there is to go on). With TLS
		// 1.3 it arrives after the handshake, on the first read.
		return "TLS: Prometheus refused this client's certificate (mTLS: is a client certificate configured, and signed by a CA Prometheus trusts?)"
	}
	return ""
}

// single returns the one finite float of an instant query's result.
func single(v model.Value) (float64, error) {
	vec, ok := v.(model.Vector)
	if !ok {
		if v == nil {
			return 0, fmt.Errorf("%w: no result", analysis.ErrWrongType)
		}
		return 0, fmt.Errorf("%w: a %s, want an instant vector", analysis.ErrWrongType, v.Type())
	}
	switch len(vec) {
	case 0:
		return 0, analysis.ErrNoData
	case 1:
	default:
		return 0, fmt.Errorf("%w: %d series, want 1: %s", analysis.ErrManySeries, len(vec), seriesList(vec, 3))
	}
	s := vec[0]
	if s.Histogram != nil {
		return 0, fmt.Errorf("%w: %s is a native histogram, want a float", analysis.ErrWrongType, s.Metric)
	}
	f := float64(s.Value)
	switch {
	case math.IsNaN(f):
		return 0, analysis.ErrNaN
	case math.IsInf(f, 0):
		return 0, fmt.Errorf("%w: %v", analysis.ErrInfinite, f)
	}
	return f, nil
}

// seriesList names the first n series of vec, so that a query that
// forgot a sum() shows what it should have aggregated.
func seriesList(vec model.Vector, n int) string {
	names := make([]string, 0, n+1)
	for i, s := range vec {
		if i == n {
			names = append(names, fmt.Sprintf("and %d more", len(vec)-n))
			break
		}
		names = append(names, s.Metric.String())
	}
	return strings.Join(names, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
