package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
)

// defaultPreconditionRetry is --precondition-retry's default: as often as
// a namespace fledge may not read yet is tried again. Installing Istio or
// fixing Prometheus takes minutes; asking more often buys nothing.
const defaultPreconditionRetry = 30 * time.Second

// preconditionTimeout bounds one check: an API server or a Prometheus that
// takes longer than this to answer is as good as missing for now, and the
// next round asks again.
const preconditionTimeout = 10 * time.Second

// A precondition is something outside fledge that it needs before it may
// act. check returns nil when it holds, or an error that says what is
// missing and how to fix it.
type precondition struct {
	name  string // fledge_precondition_ok's check label
	check func(context.Context) error
	// readinessOnly: until it first holds, /readyz fails, but fledge acts
	// meanwhile.
	readinessOnly bool
}

// preconditions gate the engine's start. Without Istio's VirtualService API
// every take-over would pause a Deployment that fledge then cannot route:
// fledge does not act until it is served. Without Prometheus every rollout
// holds at its first analysis, but fledge acts all the same (a readiness-
// only check): a replica started during a Prometheus outage (a failover, a
// drain) must still take the Lease, carry out aborts and rollbacks, and
// end rollouts at their analysis deadline. Both are mistakes a restart
// does not fix, so fledge does not exit (a crash loop hides the reason
// behind back-offs): it stays alive (/healthz), not ready (/readyz says
// what is missing) until each check first holds, logs one line per
// change, and checks again every retry.
//
// Readiness is about the start only. Once every check has held, fledge has
// started and stays ready: a Prometheus outage later holds the rollouts
// (their analysis fails, which the Flights, their Events and the metrics
// show) and an unready pod would only take the API's endpoint away from
// fledgectl, and, in a rolling update, stall it. The checks go on after the
// start for the log and fledge_precondition_ok, which an alert can watch.
type preconditions struct {
	checks         []precondition
	retry, timeout time.Duration
	clock          clock.Clock
	log            *slog.Logger
	ok             *prometheus.GaugeVec

	mu      sync.Mutex
	checked bool              // a round has run
	failing map[string]string // check name → why, for the checks failing now
	started bool              // every check that gates acting held once
	held    map[string]bool   // checks that held once
	start   chan struct{}     // closed when started
}

func newPreconditions(reg prometheus.Registerer, log *slog.Logger, retry time.Duration, checks ...precondition) *preconditions {
	if retry <= 0 {
		retry = defaultPreconditionRetry
	}
	ok := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fledge_precondition_ok",
		Help: "1 if the check held when last made, 0 if not: istio-crds (the API server serves networking.istio.io/v1 VirtualServices), prometheus (Prometheus answers a query with fledge's settings). Checked every --precondition-retry; fledge acts once istio-crds held, and is ready once both held.",
	}, []string{"check"})
	if reg != nil {
		reg.MustRegister(ok)
	}
	return &preconditions{checks: checks, retry: retry, timeout: preconditionTimeout, clock: clock.RealClock{}, log: log, ok: ok,
		failing: map[string]string{}, held: map[string]bool{}, start: make(chan struct{})}
}

// run checks now, then every retry, until ctx is done.
func (p *preconditions) run(ctx context.Context) {
	for {
		p.checkOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-p.clock.After(p.retry):
		}
	}
}

// wait blocks until every check has held once (true) or ctx is done.
func (p *preconditions) wait(ctx context.Context) bool {
	select {
	case <-p.start:
		return true
	case <-ctx.Done():
		return false
	}
}

// checkOnce makes every check, side by side so that a slow one does not
// delay the others' verdicts, records the outcomes, and logs each check
// whose outcome (or reason) changed. It reports whether all held.
func (p *preconditions) checkOnce(ctx context.Context) bool {
	errs := make([]error, len(p.checks))
	var wg sync.WaitGroup
	for i, c := range p.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			errs[i] = c.check(ctx)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false // shutting down: the round's failures say nothing
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checked = true
	for i, c := range p.checks {
		before, wasFailing := p.failing[c.name]
		if errs[i] == nil {
			p.ok.WithLabelValues(c.name).Set(1)
			p.held[c.name] = true
			delete(p.failing, c.name)
			if wasFailing {
				p.log.Info("precondition holds now", "check", c.name)
			}
			continue
		}
		why := errs[i].Error()
		p.ok.WithLabelValues(c.name).Set(0)
		p.failing[c.name] = why
		if wasFailing && before == why {
			continue // said already
		}
		switch {
		case p.held[c.name]:
			p.log.Error("a precondition no longer holds: fledge keeps running and stays ready, rollouts that need it hold; checked again every "+p.retry.String(), "check", c.name, "reason", why)
		case c.readinessOnly:
			p.log.Error("a precondition does not hold: fledge acts, rollouts that need it hold, and /readyz fails until it holds; checked again every "+p.retry.String(), "check", c.name, "reason", why)
		default:
			p.log.Error("fledge waits for a precondition: it acts on nothing and /readyz fails until it holds; checked again every "+p.retry.String(), "check", c.name, "reason", why)
		}
	}
	gating := slices.ContainsFunc(p.checks, func(c precondition) bool { _, failing := p.failing[c.name]; return failing && !c.readinessOnly })
	if !gating && !p.started {
		p.started = true
		close(p.start)
		if len(p.checks) > 0 {
			p.log.Info("fledge starts: every precondition it acts on holds", "checks", p.names())
		}
	}
	return len(p.failing) == 0
}

// notReady is what /readyz says while a precondition has not held yet,
// and "" once every one has held.
func (p *preconditions) notReady() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.checked {
		return "fledge is checking its preconditions (" + strings.Join(p.names(), ", ") + ") before it starts"
	}
	var b strings.Builder
	for _, c := range p.checks {
		if why, failing := p.failing[c.name]; failing && !p.held[c.name] {
			fmt.Fprintf(&b, "\n%s: %s", c.name, why)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	if p.started {
		return fmt.Sprintf("fledge acts, but waits for a precondition, checked every %s:", p.retry) + b.String()
	}
	return fmt.Sprintf("fledge has not started: it waits for its preconditions, checked every %s:", p.retry) + b.String()
}

func (p *preconditions) names() []string {
	var names []string
	for _, c := range p.checks {
		names = append(names, c.name)
	}
	return names
}

// istioGroupVersion is the API fledge reads and writes VirtualServices in,
// served from Istio 1.22 on.
const istioGroupVersion = "networking.istio.io/v1"

// istioServed checks that the API server serves VirtualServices in
// networking.istio.io/v1, through discovery, which every authenticated
// user may read: a cluster without Istio's CRDs (or with an Istio older
// than 1.22) fails it. d's requests should carry a timeout (see
// discoveryFor): discovery takes no context, so the check stops waiting at
// ctx's deadline but cannot cancel the request itself.
func istioServed(d discovery.ServerResourcesInterface) precondition {
	return precondition{name: "istio-crds", check: func(ctx context.Context) error {
		type answer struct {
			list *metav1.APIResourceList
			err  error
		}
		done := make(chan answer, 1)
		go func() {
			list, err := d.ServerResourcesForGroupVersion(istioGroupVersion)
			done <- answer{list, err}
		}()
		var a answer
		select {
		case a = <-done:
		case <-ctx.Done():
			return fmt.Errorf("cannot tell whether Istio's CRDs are installed: the API server did not answer discovery of %s in time", istioGroupVersion)
		}
		served := a.err == nil && slices.ContainsFunc(a.list.APIResources, func(r metav1.APIResource) bool { return r.Name == "virtualservices" })
		switch {
		case apierrors.IsNotFound(a.err), a.err == nil && !served:
			return errors.New("Istio's CRDs are not installed: networking.istio.io/v1 VirtualService is not served by the API server; install Istio 1.22 or later, or only its CRDs (the istio/base Helm chart)")
		case a.err != nil:
			return fmt.Errorf("cannot tell whether Istio's CRDs are installed: asking the API server for %s: %w", istioGroupVersion, a.err)
		}
		return nil
	}}
}

// discoveryFor is a discovery client with cfg's identity whose every
// request gives up after preconditionTimeout.
func discoveryFor(cfg *rest.Config) (discovery.ServerResourcesInterface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = preconditionTimeout
	return discovery.NewDiscoveryClientForConfig(cfg)
}

// prometheusAnswers checks that Prometheus answers a query through ping
// (promclient.Client.Ping: the checks' own address, TLS settings,
// credentials and headers), so that a wrong URL, CA or token shows at
// start rather than at the first rollout's first analysis.
func prometheusAnswers(ping func(context.Context) error) precondition {
	return precondition{name: "prometheus", readinessOnly: true, check: func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			return fmt.Errorf("Prometheus does not answer a query: %w; check that it runs and that fledge's --prometheus-url and other --prometheus-* flags (TLS, credentials) are right", err)
		}
		return nil
	}}
}
