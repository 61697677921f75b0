package engine

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Metrics are fledge's own metrics, on /metrics.
type Metrics struct {
	phase      *stateGauge
	stage      *stateGauge
	weight     *prometheus.GaugeVec
	baseline   *prometheus.GaugeVec
	watch      *stateGauge
	reverted   *prometheus.GaugeVec
	checks     *prometheus.CounterVec
	checkValue *prometheus.GaugeVec
	threshold  *prometheus.GaugeVec
	decision   prometheus.Histogram
	reconciles *prometheus.CounterVec
	reconcile  prometheus.Histogram
	writes     *prometheus.CounterVec
	queries    *prometheus.CounterVec
	hooks      *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	namespaces *prometheus.GaugeVec
	// kubeRequests: see CountKubeRequests.
	kubeRequests *prometheus.CounterVec
	judged       prometheus.Counter
	comparison   comparisonMetrics
	latency      latencyMetrics
	flights      flightMetrics
	// leader and policies: see Leading and PolicyReloaded.
	leader        prometheus.Gauge
	policyReloads *prometheus.CounterVec
	policyLoaded  prometheus.Gauge
}

// comparisonMetrics are each Flight's comparisons with stable as its
// status's evidence stands: one series per Flight, comparison and side,
// removed when the evidence is (a new revision starts afresh) or the
// Flight goes.
type comparisonMetrics struct {
	evidence   *prometheus.GaugeVec
	rollbackAt *prometheus.GaugeVec
	noWorse    *prometheus.GaugeVec
	badRatio   *prometheus.GaugeVec
	requests   *prometheus.GaugeVec

	mu sync.Mutex
	// shown are the comparisons exported per Flight ("namespace/name"),
	// so that one whose evidence is gone loses its series.
	shown map[string][]string
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		phase: newStateGauge(prometheus.GaugeOpts{
			Name: "fledge_flight_phase", Help: "1, labelled with the phase each Flight is in: one series a Flight; sum by phase for rollouts by phase.",
		}, "phase"),
		stage: newStateGauge(prometheus.GaugeOpts{
			Name: "fledge_flight_stage", Help: "1, labelled with the stage of its strategy each Flight is in (none, starting, mirror, cohort, weighted, preview, switched, promoting, rolling-back): one series a Flight.",
		}, "stage"),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_canary_weight_percent", Help: "The canary's intended share of traffic (0 while it is withdrawn: no canary pod ready).",
		}, []string{"namespace", "flight"}),
		baseline: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_baseline_weight_percent", Help: "A fresh baseline's intended share of traffic (policy baseline: fresh): the canary's while it serves one, 0 otherwise.",
		}, []string{"namespace", "flight"}),
		watch: newStateGauge(prometheus.GaugeOpts{
			Name: "fledge_watch_state", Help: "1, labelled with the state of each Flight's watch after its last promotion (policy postPromotion: Preparing, Watching, Passed, Ended, Reverted, Restoring): one series a Flight with a watch, none without. Reverted: all traffic is on the previous revision's pods until the Deployment's template changes.",
		}, "state"),
		reverted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_watch_reverted", Help: "1 while a Flight's watch after its promotion has reverted it (all traffic on the previous revision's pods until the Deployment's template changes), 0 otherwise.",
		}, []string{"namespace", "flight"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_checks_total", Help: "Analysis checks run, by metric and outcome (pass, fail, inconclusive, not-enough-data, error).",
		}, []string{"namespace", "flight", "metric", "outcome"}),
		checkValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_check_value", Help: "The last measured value of each check.",
		}, []string{"namespace", "flight", "metric"}),
		threshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_check_threshold", Help: "The bounds each check's value is judged against (bound: min or max, inclusive).",
		}, []string{"namespace", "flight", "metric", "bound"}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fledge_decision_duration_seconds", Help: "Time to decide one look-in, analysis queries included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_reconciles_total", Help: "Reconciles by result (ok, error).",
		}, []string{"result"}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fledge_reconcile_duration_seconds", Help: "Time of one look at a Flight, end to end: cache reads, routing reads, analysis, decision and writes.",
			Buckets: ReconcileBuckets,
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_api_writes_total", Help: "Kubernetes API writes by kind of object; routing-call counts router calls, which write only what changed.",
		}, []string{"kind"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_prometheus_queries_total", Help: "PromQL queries sent for analysis, by result (ok, error).",
		}, []string{"result"}),
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_hook_calls_total", Help: "Hook calls answered, by hook type and state (OK, Rejected, Error).",
		}, []string{"type", "state"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_deliveries_total", Help: "Outbox delivery attempts (Slack messages, event and post-rollout hooks), by channel kind (slack, hook) and result (delivered, retry, failed).",
		}, []string{"channel", "result"}),
		comparison: comparisonMetrics{
			evidence: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "fledge_comparison_evidence", Help: "The evidence (an e-value) that the canary is worse than stable, per comparison; the canary is rolled back once it reaches fledge_comparison_rollback_at.",
			}, []string{"namespace", "flight", "metric"}),
			rollbackAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "fledge_comparison_rollback_at", Help: "The evidence at which a comparison rolls the canary back: 1/alpha, the policy's alpha shared among its comparisons.",
			}, []string{"namespace", "flight", "metric"}),
			noWorse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "fledge_comparison_no_worse", Help: fmt.Sprintf("The evidence (an e-value) that the canary is no worse than stable plus the margin, per comparison; it is shown so once it reaches %g (95%%).", 1/rollout.PromotionLevel),
			}, []string{"namespace", "flight", "metric"}),
			badRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "fledge_comparison_bad_ratio", Help: "The share of bad requests since the canary's first look, per comparison and side (canary, stable).",
			}, []string{"namespace", "flight", "metric", "side"}),
			requests: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "fledge_comparison_requests", Help: "The requests a comparison's evidence rests on, since the canary's first look, per side (canary, stable).",
			}, []string{"namespace", "flight", "metric", "side"}),
			shown: map[string][]string{},
		},
		kubeRequests: prometheus.NewCounterVec(kubeRequestsOpts, []string{"verb", "resource"}),
		judged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fledge_judged_looks_total", Help: "Looks that measured their policy's checks (sent PromQL queries); fledge_prometheus_queries_total over it is the queries per judged look.",
		}),
		latency: newLatencyMetrics(),
		namespaces: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_namespace_watched", Help: "1 for each namespace fledge acts in, 0 for one it was told to act in but may not read yet (the log says why); namespace=\"\" is cluster-wide.",
		}, []string{"namespace"}),
		flights: newFlightMetrics(),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fledge_leader", Help: "1 while this replica holds the leader Lease and acts, 0 while it follows; the sum over replicas should be 1.",
		}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_policy_reloads_total", Help: "Reloads of the policy file after it changed, by result (ok, rejected: the previous policies stay in force).",
		}, []string{"result"}),
		policyLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fledge_policy_last_reload_successful", Help: "1 if the policy file as it is now is in force, 0 if its last change was rejected (the log says why).",
		}),
	}
	// Both results exist from the start, so that increase() sees a
	// process's first rejection (a counter born at 1 shows no increase).
	m.policyReloads.WithLabelValues("ok")
	m.policyReloads.WithLabelValues("rejected")
	// The engine does not start without a valid policy file
	// (LoadPolicyFile), so whatever is scraped began with one in force.
	m.policyLoaded.Set(1)
	if reg != nil {
		reg.MustRegister(m.phase, m.stage, m.weight, m.baseline, m.watch, m.reverted, m.checks, m.checkValue, m.threshold, m.decision, m.reconciles, m.reconcile, m.writes, m.queries, m.hooks, m.deliveries, m.namespaces, m.kubeRequests, m.judged,
			m.comparison.evidence, m.comparison.rollbackAt, m.comparison.noWorse, m.comparison.badRatio, m.comparison.requests,
			m.flights.decisions, m.flights.holdSince, m.leader, m.policyReloads, m.policyLoaded)
		reg.MustRegister(m.latency.collectors()...)
	}
	return m
}

// Leading records whether this replica leads (holds the Lease and acts).
// Decisions taken before it began leading were counted by the replica
// that led then: see flightMetrics.
func (m *Metrics) Leading(leading bool) {
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
	m.flights.leading(leading, time.Now())
}

// PolicyReloaded records the outcome of reloading the policy file after
// it changed: err is why it was rejected (the previous policies stay in
// force), nil if the new file is in force.
func (m *Metrics) PolicyReloaded(err error) {
	if err != nil {
		m.policyReloads.WithLabelValues("rejected").Inc()
		m.policyLoaded.Set(0)
		return
	}
	m.policyReloads.WithLabelValues("ok").Inc()
	m.policyLoaded.Set(1)
}

// observe exports a Flight's state as written, with its comparisons'
// evidence judged at the policy's level.
func (m *Metrics) observe(f *v1alpha1.Flight, p *rollout.Policy) {
	m.comparison.observe(f, p)
	m.flights.observe(f)
	m.phase.set(f.Namespace, f.Name, string(f.Status.Phase))
	m.stage.set(f.Namespace, f.Name, stageOf(&f.Status))
	weight := f.Status.CanaryWeight
	if f.Status.CanaryWithdrawn {
		weight = 0 // on stable while no canary pod is ready
	}
	m.weight.WithLabelValues(f.Namespace, f.Name).Set(float64(weight))
	m.baseline.WithLabelValues(f.Namespace, f.Name).Set(float64(baselineWeight(&f.Status)))
	reverted := 0.0
	if w := f.Status.Watch; w != nil && (w.State == v1alpha1.WatchReverted || w.State == v1alpha1.WatchRestoring) {
		reverted = 1
	}
	m.reverted.WithLabelValues(f.Namespace, f.Name).Set(reverted)
	watch := ""
	if w := f.Status.Watch; w != nil {
		watch = string(w.State)
	}
	m.watch.set(f.Namespace, f.Name, watch)
}

// stateGauge is a state per Flight, as one series labelled with it (value
// 1), replaced when the state changes: not one series per possible state,
// most of them 0, which at thousands of Flights is most of the engine's
// series and much of its memory.
type stateGauge struct {
	*prometheus.GaugeVec
	mu  sync.Mutex
	now map[string]string // "namespace/name" -> the state exported
}

func newStateGauge(opts prometheus.GaugeOpts, label string) *stateGauge {
	return &stateGauge{GaugeVec: prometheus.NewGaugeVec(opts, []string{"namespace", "flight", label}), now: map[string]string{}}
}

// set exports the Flight's state ("": none, no series).
func (g *stateGauge) set(ns, name, state string) {
	key := ns + "/" + name
	g.mu.Lock()
	defer g.mu.Unlock()
	prev, ok := g.now[key]
	if ok && prev == state {
		return
	}
	if ok {
		g.DeleteLabelValues(ns, name, prev)
		delete(g.now, key)
	}
	if state != "" {
		g.WithLabelValues(ns, name, state).Set(1)
		g.now[key] = state
	}
}

// baselineWeight is a fresh baseline's share, as Decide routes it.
func baselineWeight(st *v1alpha1.FlightStatus) int32 {
	inFlight := st.Phase == v1alpha1.PhaseProgressing || st.Phase == v1alpha1.PhasePaused
	if w := st.CanaryWeight; st.Baseline == rollout.BaselineFresh && inFlight && st.Step >= 0 && !st.CanaryWithdrawn && w > 0 && 2*w <= 100 {
		return w
	}
	return 0
}

// stageOf is where a Flight stands in its strategy: no revision in flight
// (none), its canary starting (before traffic), a cohort stage, the
// weighted steps, a blue/green preview or switch, promoting, or rolling
// back.
func stageOf(st *v1alpha1.FlightStatus) string {
	switch st.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused:
	case v1alpha1.PhasePromoting:
		return "promoting"
	case v1alpha1.PhaseRollingBack:
		return "rolling-back"
	default:
		return "none"
	}
	switch {
	case st.Step < 0:
		return "starting"
	case st.BlueGreen != nil && st.Step == 0:
		return "preview"
	case st.BlueGreen != nil:
		return "switched"
	case rollout.CohortOf(st) != nil && rollout.CohortOf(st).Mirror > 0:
		return "mirror"
	case rollout.CohortOf(st) != nil:
		return "cohort"
	}
	return "weighted"
}

func (m *Metrics) checked(ns, name string, metrics []analysis.Metric, checks []analysis.Check) {
	m.judged.Inc()
	for _, pm := range metrics {
		if pm.Min != nil {
			m.threshold.WithLabelValues(ns, name, pm.Name, "min").Set(*pm.Min)
		}
		if pm.Max != nil {
			m.threshold.WithLabelValues(ns, name, pm.Name, "max").Set(*pm.Max)
		}
	}
	for _, c := range checks {
		if c.Outcome == "" {
			continue // a comparison's counters: the decision core judges them
		}
		m.checks.WithLabelValues(ns, name, c.Metric, string(c.Outcome)).Inc()
		if c.Value != nil {
			m.checkValue.WithLabelValues(ns, name, c.Metric).Set(*c.Value)
		}
	}
}

// namespaceWatched records whether fledge acts in namespace ns yet.
func (m *Metrics) namespaceWatched(ns string, watched bool) {
	v := 0.0
	if watched {
		v = 1
	}
	m.namespaces.WithLabelValues(ns).Set(v)
}

func (m *Metrics) decided(d time.Duration) { m.decision.Observe(d.Seconds()) }

func (m *Metrics) reconciled(d time.Duration, err error) {
	m.reconcile.Observe(d.Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reconciles.WithLabelValues(result).Inc()
}

func (m *Metrics) countWrite(kind string) { m.writes.WithLabelValues(kind).Inc() }

// CountQuery counts one analysis query, how long it took, and whether it
// failed.
func (m *Metrics) CountQuery(took time.Duration, err error) {
	m.latency.prometheusQuery.Observe(took.Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.queries.WithLabelValues(result).Inc()
}

// forget drops a Flight's series once it is gone.
func (m *Metrics) forget(ns, name string) {
	labels := map[string]string{"namespace": ns, "flight": name}
	m.phase.set(ns, name, "")
	m.stage.set(ns, name, "")
	m.weight.DeletePartialMatch(labels)
	m.baseline.DeletePartialMatch(labels)
	m.watch.set(ns, name, "")
	m.reverted.DeletePartialMatch(labels)
	m.checks.DeletePartialMatch(labels)
	m.checkValue.DeletePartialMatch(labels)
	m.threshold.DeletePartialMatch(labels)
	m.comparison.forget(ns, name)
	m.flights.forget(ns, name)
}

func (c *comparisonMetrics) observe(f *v1alpha1.Flight, p *rollout.Policy) {
	key := f.Namespace + "/" + f.Name
	var alpha float64
	if p != nil {
		alpha = p.ComparisonAlpha()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var shown []string
	for _, ev := range f.Status.Evidence {
		shown = append(shown, ev.Metric)
		c.evidence.WithLabelValues(f.Namespace, f.Name, ev.Metric).Set(ev.Worse.E())
		c.noWorse.WithLabelValues(f.Namespace, f.Name, ev.Metric).Set(math.Exp(ev.NoWorse.LogE))
		if alpha > 0 {
			c.rollbackAt.WithLabelValues(f.Namespace, f.Name, ev.Metric).Set(1 / alpha)
		} else {
			// A policy without comparisons now: no level to show.
			c.rollbackAt.DeleteLabelValues(f.Namespace, f.Name, ev.Metric)
		}
		for side, counts := range map[string]sequential.Counts{"canary": ev.Canary, "stable": ev.Stable} {
			c.badRatio.WithLabelValues(f.Namespace, f.Name, ev.Metric, side).Set(counts.Rate())
			c.requests.WithLabelValues(f.Namespace, f.Name, ev.Metric, side).Set(counts.Requests)
		}
	}
	for _, metric := range c.shown[key] {
		if !slices.Contains(shown, metric) {
			c.deleteLocked(f.Namespace, f.Name, metric)
		}
	}
	if len(shown) == 0 {
		delete(c.shown, key)
	} else {
		c.shown[key] = shown
	}
}

func (c *comparisonMetrics) forget(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	labels := prometheus.Labels{"namespace": ns, "flight": name}
	for _, v := range []*prometheus.GaugeVec{c.evidence, c.rollbackAt, c.noWorse, c.badRatio, c.requests} {
		v.DeletePartialMatch(labels)
	}
	delete(c.shown, ns+"/"+name)
}

func (c *comparisonMetrics) deleteLocked(ns, name, metric string) {
	labels := prometheus.Labels{"namespace": ns, "flight": name, "metric": metric}
	c.evidence.DeletePartialMatch(labels)
	c.rollbackAt.DeletePartialMatch(labels)
	c.noWorse.DeletePartialMatch(labels)
	c.badRatio.DeletePartialMatch(labels)
	c.requests.DeletePartialMatch(labels)
}

// HookAnswered counts a hook call's answer.
func (m *Metrics) HookAnswered(a rollout.CallHook, r rollout.CallResult) {
	m.hooks.WithLabelValues(string(a.Hook.Type), string(r.State)).Inc()
}

// DeliveryAttempted counts one delivery attempt: delivered, retry (failed,
// will be tried again) or failed (given up).
func (m *Metrics) DeliveryAttempted(a rollout.Deliver, result string) {
	kind := "hook"
	if a.Delivery.Channel == rollout.ChannelSlack {
		kind = "slack"
	}
	m.deliveries.WithLabelValues(kind, result).Inc()
}

// ReconcileBuckets are fledge_reconcile_duration_seconds's bounds: from a
// look served by the caches (about a millisecond) to the reconcile
// deadline, with the bounds an SLO is written against (250 ms, 500 ms, 1 s)
// among them, so that "99% of looks within 1 s" reads off a bucket.
var ReconcileBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60}

// flightMetrics are each Flight's decisions, counted as their records
// appear in its decision log (status.decisions), and its hold, if it is
// held. The log is what the decision core wrote, so the count needs no
// hook in the decision path; what it must not do is count a record twice
// (the log is observed at every look) or count another replica's: a
// replica that takes the Lease over sees records its predecessor decided,
// and counted, before.
type flightMetrics struct {
	decisions *prometheus.CounterVec
	holdSince *prometheus.GaugeVec

	mu sync.Mutex
	// since is when this replica began leading (zero: count every record
	// of a Flight seen for the first time).
	since time.Time
	seen  map[string]*flightSeen // by "namespace/name"
}

// flightSeen is how far a Flight's log has been counted: up to last,
// and of the records at last (a status keeps times to the second, so
// several may share it), those in at. A hold repeated round after round
// is one record rewritten with a later time and a higher Repeats: each
// round counts once.
type flightSeen struct {
	last time.Time
	at   []recordKey
	hold string // the hold reason exported, "" if none
}

type recordKey struct {
	verdict               v1alpha1.Verdict
	revision              string
	step, weight, repeats int32
}

func keyOf(r *v1alpha1.DecisionRecord) recordKey {
	return recordKey{verdict: r.Verdict, revision: r.Revision, step: r.Step, weight: r.Weight, repeats: r.Repeats}
}

func newFlightMetrics() flightMetrics {
	return flightMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fledge_decisions_total", Help: "Decisions recorded in each Flight's log, by verdict (start, advance, hold, fail, promote, promoted, rollback, abort, ...); a hold repeated round after round counts each round. Counted by the replica that decided them.",
		}, []string{"namespace", "flight", "verdict"}),
		holdSince: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fledge_flight_hold_since_timestamp_seconds", Help: "When each held Flight's hold began (Unix seconds), by reason; reason InsufficientEvidence is a rollout past its analysis deadline without a verdict. No series while a Flight moves.",
		}, []string{"namespace", "flight", "reason"}),
		seen: map[string]*flightSeen{},
	}
}

func (fm *flightMetrics) leading(leading bool, now time.Time) {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if leading {
		// Truncated as the status's times are: a record of this very
		// second is counted rather than lost.
		fm.since = now.Truncate(time.Second)
	}
}

func (fm *flightMetrics) observe(f *v1alpha1.Flight) {
	key := f.Namespace + "/" + f.Name
	fm.mu.Lock()
	defer fm.mu.Unlock()
	s := fm.seen[key]
	if s == nil {
		s = &flightSeen{last: fm.since}
		fm.seen[key] = s
		// At 0 from the first look, so that increase() sees the first
		// rollback (a counter born at 1 shows none).
		fm.decisions.WithLabelValues(f.Namespace, f.Name, string(v1alpha1.VerdictRollback))
	}
	last, at := s.last, s.at
	for i := range f.Status.Decisions {
		r := &f.Status.Decisions[i]
		t, k := r.At.Time, keyOf(r)
		if t.Before(s.last) || t.Equal(s.last) && slices.Contains(s.at, k) {
			continue
		}
		fm.decisions.WithLabelValues(f.Namespace, f.Name, string(r.Verdict)).Inc()
		if t.After(last) {
			last, at = t, nil
		}
		if t.Equal(last) {
			at = append(at, k)
		}
	}
	s.last, s.at = last, at

	reason := ""
	if h := f.Status.Hold; h != nil {
		reason = h.Reason
		fm.holdSince.WithLabelValues(f.Namespace, f.Name, reason).Set(float64(h.Since.Unix()))
	}
	if s.hold != "" && s.hold != reason {
		fm.holdSince.DeleteLabelValues(f.Namespace, f.Name, s.hold)
	}
	s.hold = reason
}

func (fm *flightMetrics) forget(ns, name string) {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	labels := prometheus.Labels{"namespace": ns, "flight": name}
	fm.decisions.DeletePartialMatch(labels)
	fm.holdSince.DeletePartialMatch(labels)
	delete(fm.seen, ns+"/"+name)
}
