package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/fledgehq/fledge/webhooks"
)

// maxErrors is how many distinct errors a result lists: enough to tell a
// refused connection from a 503, few enough for a check's message.
const maxErrors = 5

// attackConfig is what a run needs beyond its Spec.
type attackConfig struct {
	proxy          func(*http.Request) (*url.URL, error)
	requestTimeout time.Duration
	maxInFlight    uint64
}

// attack sends spec.Requests() requests to target at spec.Rate per second
// and summarises them. It returns an error, and no figures, only when ctx
// ended the run early: a partial run must not be taken for the whole one.
func attack(ctx context.Context, spec Spec, target *url.URL, name string, cfg attackConfig) (webhooks.LoadFigures, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// vegeta's default transport uses http.ProxyFromEnvironment too; it is
	// set here explicitly because the sandbox depends on it (its mesh is a
	// proxy), and so that a test can point it at its own proxy.
	tr := &http.Transport{
		Proxy:                 cfg.proxy,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   int(min(cfg.maxInFlight, 1024)),
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: runTransport{run: ctx, next: tr},
		Timeout:   cfg.requestTimeout,
		// Following a redirect could take the load to a host the allowlist
		// does not name; a 3xx is counted as the answer it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.MaxWorkers(cfg.maxInFlight),
		vegeta.MaxBody(0), // the answers' bodies are drained, not kept
	)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()

	tgt := vegeta.Target{Method: spec.Method, URL: target.String(), Body: spec.Body, Header: spec.Header}
	pacer := countedPacer{ConstantPacer: vegeta.ConstantPacer{Freq: spec.Rate, Per: time.Second}, total: spec.Requests()}
	var sum summary
	// A duration of 0 lets the pacer alone end the attack, after exactly
	// total hits: vegeta's own duration check would end it one hit early or
	// late depending on scheduling.
	for res := range atk.Attack(vegeta.NewStaticTargeter(tgt), pacer, 0, name) {
		sum.add(res)
	}
	if err := ctx.Err(); err != nil {
		return webhooks.LoadFigures{}, fmt.Errorf("run cut short after %d of %d requests: %w", sum.requests, pacer.total, context.Cause(ctx))
	}
	return sum.result(), nil
}

// attackBoth runs spec against its URL and, if it names one, its StableURL
// at the same time: the same rate and duration on both sides, so that a
// comparison gets as much evidence of stable as of the canary over the
// same minutes. The two runs are independent (each has its own transport
// and in-flight bound); if either is cut short, so is the result.
func attackBoth(ctx context.Context, spec Spec, name string, cfg attackConfig) (webhooks.LoadResult, error) {
	if spec.StableURL == nil {
		figures, err := attack(ctx, spec, spec.URL, name, cfg)
		return webhooks.LoadResult{LoadFigures: figures}, err
	}
	var stable webhooks.LoadFigures
	var stableErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		stable, stableErr = attack(ctx, spec, spec.StableURL, name+"/stable", cfg)
	}()
	canary, err := attack(ctx, spec, spec.URL, name, cfg)
	<-done
	if err != nil {
		return webhooks.LoadResult{}, err
	}
	if stableErr != nil {
		return webhooks.LoadResult{}, fmt.Errorf("stable: %w", stableErr)
	}
	return webhooks.LoadResult{LoadFigures: canary, Stable: &stable}, nil
}

// countedPacer paces like ConstantPacer and stops after total hits.
type countedPacer struct {
	vegeta.ConstantPacer
	total uint64
}

func (p countedPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= p.total {
		return 0, true
	}
	return p.ConstantPacer.Pace(elapsed, hits)
}

// runTransport ties every request to the run's context. vegeta builds its
// requests without one, so without this a cancelled run (a shutdown) would
// wait for the requests in flight to time out.
type runTransport struct {
	run  context.Context
	next http.RoundTripper
}

func (t runTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	unregister := context.AfterFunc(t.run, cancel)
	context.AfterFunc(ctx, func() { unregister() })
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// summary accumulates a run's results. It keeps a bounded state whatever
// the number of requests: vegeta.Metrics would also keep every distinct
// error, and transport errors name ephemeral ports.
type summary struct {
	requests, succeeded uint64
	latencies           vegeta.LatencyMetrics
	first, end          time.Time // first request sent, last answer received
	errors              []string
}

func (s *summary) add(r *vegeta.Result) {
	s.requests++
	s.latencies.Add(r.Latency)
	if s.first.IsZero() || r.Timestamp.Before(s.first) {
		s.first = r.Timestamp
	}
	if end := r.End(); end.After(s.end) {
		s.end = end
	}
	// vegeta marks 4xx answers as errors too; here only what the package
	// documentation calls a failure is one.
	if r.Code != 0 && r.Code < 500 {
		s.succeeded++
		return
	}
	msg := r.Error
	if msg == "" {
		msg = fmt.Sprintf("status %d", r.Code)
	}
	if len(s.errors) < maxErrors && !slices.Contains(s.errors, msg) {
		s.errors = append(s.errors, msg)
	}
}

func (s *summary) result() webhooks.LoadFigures {
	out := webhooks.LoadFigures{Requests: s.requests, Errors: s.errors}
	if s.requests == 0 {
		return out
	}
	out.Success = float64(s.succeeded) / float64(s.requests)
	out.P50Ms = milliseconds(s.latencies.Quantile(0.50))
	out.P95Ms = milliseconds(s.latencies.Quantile(0.95))
	out.P99Ms = milliseconds(s.latencies.Quantile(0.99))
	out.Duration = s.end.Sub(s.first).Seconds()
	return out
}

func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
