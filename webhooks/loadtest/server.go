package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/webhooks"
)

const (
	// SignatureTolerance is how far a call's signature time may be from
	// now, either way.
	SignatureTolerance = 5 * time.Minute
	// MaxBody is the largest payload read; a payload is a few kilobytes.
	MaxBody = 1 << 20

	defaultMaxConcurrent  = 8
	defaultRequestTimeout = 10 * time.Second
	defaultMaxInFlight    = 1000
	defaultRecordSize     = 1000
	defaultRecordTTL      = time.Hour
)

// Options configure a Server. Secret, or InsecureNoSignature, and Allow
// are required; zero values of the others take the defaults.
type Options struct {
	// Secret is the HMAC key fledge signs hook calls with, byte for byte.
	Secret []byte
	// InsecureNoSignature accepts unsigned calls. It is for trying the
	// tester locally: anyone who can reach it can then make it send load.
	InsecureNoSignature bool
	// Allow lists the host patterns load may go to; see ParseAllowlist.
	Allow  []string
	Limits Limits
	// MaxConcurrent bounds the runs in progress; calls beyond are answered
	// 503. Default 8.
	MaxConcurrent int
	// RequestTimeout bounds one request of a run. Default 10s.
	RequestTimeout time.Duration
	// MaxInFlight bounds one run's requests awaiting an answer: against a
	// target that stopped answering, vegeta would otherwise start a
	// goroutine per request until the timeout. Default 1000.
	MaxInFlight int
	// Proxy picks the proxy for a target. Default http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)
	// RecordSize and RecordTTL bound the completed runs remembered for
	// deliveries sent again. Defaults 1000 and 1h.
	RecordSize int
	RecordTTL  time.Duration
	Clock      clock.PassiveClock
	// Logger receives one line per call; nil discards.
	Logger *slog.Logger
}

// Server answers fledge's hook calls with load runs. See the package
// documentation for the protocol.
type Server struct {
	opts   Options
	allow  Allowlist
	record *record
	group  singleflight.Group
	slots  chan struct{}
	log    *slog.Logger
	mux    *http.ServeMux

	// runs outlive the calls that started them: fledge may give up waiting
	// and call again, and the run it started should still complete.
	runCtx  context.Context
	stopRun context.CancelCauseFunc
	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup
}

// Errors a run ends with instead of a result.
var (
	errBusy     = errors.New("busy")
	errStopping = errors.New("the load tester is shutting down")
)

// New checks opts and builds a Server.
func New(opts Options) (*Server, error) {
	switch {
	case len(opts.Secret) == 0 && !opts.InsecureNoSignature:
		return nil, errors.New("load tester: no signature secret: give one, or accept unsigned calls explicitly (for local testing only)")
	case len(opts.Secret) > 0 && opts.InsecureNoSignature:
		return nil, errors.New("load tester: both a signature secret and unsigned calls accepted: choose one")
	}
	allow, err := ParseAllowlist(opts.Allow)
	if err != nil {
		return nil, fmt.Errorf("load tester: %w", err)
	}
	opts.Limits = opts.Limits.withDefaults()
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = defaultMaxConcurrent
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = defaultMaxInFlight
	}
	if opts.Proxy == nil {
		opts.Proxy = http.ProxyFromEnvironment
	}
	if opts.RecordSize <= 0 {
		opts.RecordSize = defaultRecordSize
	}
	if opts.RecordTTL <= 0 {
		opts.RecordTTL = defaultRecordTTL
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:   opts,
		allow:  allow,
		record: newRecord(opts.Clock, opts.RecordSize, opts.RecordTTL),
		slots:  make(chan struct{}, opts.MaxConcurrent),
		log:    log,
		mux:    http.NewServeMux(),
	}
	s.runCtx, s.stopRun = context.WithCancelCause(context.Background())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("POST /", s.handleHook)
	return s, nil
}

// ServeHTTP serves POST hook calls on any path and GET /healthz.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stop cancels the runs in progress, whose callers get 503, and waits for
// them to end; later calls get 503 too. A cancelled run is not recorded:
// fledge's retry of its delivery runs the load again.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.stopRun(errStopping)
	s.running.Wait()
}

func (s *Server) handleHook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, "payload: larger than %d bytes", MaxBody)
			return
		}
		s.fail(w, r, http.StatusBadRequest, "payload: %v", err)
		return
	}
	if !s.opts.InsecureNoSignature {
		if err := webhooks.Verify(s.opts.Secret, r.Header.Get(webhooks.HeaderSignature), body, s.opts.Clock.Now(), SignatureTolerance); err != nil {
			s.fail(w, r, http.StatusUnauthorized, "%s: %v", webhooks.HeaderSignature, err)
			return
		}
	}

	var p webhooks.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		s.fail(w, r, http.StatusBadRequest, "payload: %v", err)
		return
	}
	switch {
	case p.DeliveryID == "":
		s.fail(w, r, http.StatusBadRequest, "deliveryId: required, to run a delivery once")
		return
	case p.Type != webhooks.Rollout && p.Type != webhooks.PreRollout:
		s.fail(w, r, http.StatusBadRequest, "type: %q is not a load-test hook (want %s or %s)", p.Type, webhooks.Rollout, webhooks.PreRollout)
		return
	}
	spec, err := ParseSpec(p.Metadata, s.opts.Limits)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	if host := spec.URL.Hostname(); !s.allow.Allows(host) {
		s.fail(w, r, http.StatusForbidden, "metadata.url: host %q is not allowed by this load tester (allowed: %s)", host, s.allow)
		return
	}
	if spec.StableURL != nil {
		if host := spec.StableURL.Hostname(); !s.allow.Allows(host) {
			s.fail(w, r, http.StatusForbidden, "metadata.stableUrl: host %q is not allowed by this load tester (allowed: %s)", host, s.allow)
			return
		}
	}

	d := delivery{namespace: p.Namespace, name: p.Name, id: p.DeliveryID}
	log := s.log.With("delivery", p.DeliveryID, "namespace", p.Namespace, "name", p.Name, "hook", p.Hook, "type", p.Type)
	result, how, err := s.run(r.Context(), d, spec, log)
	switch {
	case errors.Is(err, errBusy):
		w.Header().Set("Retry-After", "10")
		s.fail(w, r, http.StatusServiceUnavailable, "%d runs already in progress; call again later", s.opts.MaxConcurrent)
		return
	case errors.Is(err, errStopping):
		s.fail(w, r, http.StatusServiceUnavailable, "%v; call again", err)
		return
	case err != nil: // the caller went away
		log.Info("caller left before the run ended", "err", err)
		return
	}
	if st := result.Stable; st != nil {
		log = log.With("stableRequests", st.Requests, "stableSuccess", st.Success, "stableP99Ms", st.P99Ms)
	}
	log.Info("answered", "outcome", how, "requests", result.Requests, "success", result.Success, "p99Ms", result.P99Ms)
	writeJSON(w, http.StatusOK, result)
}

// run returns d's result: the recorded one, the one of the run in
// progress, or that of a new run. how says which, for the log.
func (s *Server) run(ctx context.Context, d delivery, spec Spec, log *slog.Logger) (_ webhooks.LoadResult, how string, _ error) {
	if res, ok := s.record.get(d); ok {
		return res, "recorded", nil
	}
	ch := s.group.DoChan(d.String(), func() (any, error) {
		// A run of d may have completed between the lookup above and
		// this call: its result was recorded before the group forgot it.
		if res, ok := s.record.get(d); ok {
			return res, nil
		}
		if !s.startRun() {
			return nil, errStopping
		}
		defer s.running.Done()
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			return nil, errBusy
		}
		stableURL := ""
		if spec.StableURL != nil {
			stableURL = spec.StableURL.Redacted()
		}
		log.Info("load run started", "url", spec.URL.Redacted(), "stableUrl", stableURL, "method", spec.Method, "rate", spec.Rate,
			"duration", spec.Duration.String(), "requests", spec.Requests())
		res, err := attackBoth(s.runCtx, spec, d.id, attackConfig{
			proxy: s.opts.Proxy, requestTimeout: s.opts.RequestTimeout, maxInFlight: uint64(s.opts.MaxInFlight),
		})
		if err != nil {
			log.Warn("load run cut short", "err", err)
			return nil, errStopping
		}
		s.record.put(d, res)
		return res, nil
	})
	select {
	case out := <-ch:
		if out.Err != nil {
			return webhooks.LoadResult{}, "", out.Err
		}
		how = "ran"
		if out.Shared {
			how = "ran, shared"
		}
		return out.Val.(webhooks.LoadResult), how, nil
	case <-ctx.Done():
		return webhooks.LoadResult{}, "", ctx.Err()
	}
}

// startRun counts a run unless Stop was called: a WaitGroup must not be
// incremented from zero while Stop waits on it.
func (s *Server) startRun() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.running.Add(1)
	return true
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.log.Info("call refused", "status", code, "error", msg, "remote", r.RemoteAddr)
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
