package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// Scenario is what the canary does, against a stable that fails at
// StableErrors with latency Stable.
type Scenario struct {
	Name string
	// StableErrors is stable's error rate; the canary's is that times
	// CanaryErrorFactor.
	StableErrors, CanaryErrorFactor float64
	// Incidents: about once an hour, both sides fail IncidentFactor times as
	// often for a minute (an outage of a dependency they share).
	Incidents bool
	// Stable and Canary are the two revisions' latencies.
	Stable, Canary Latency
}

// Incident shape: frequency, length and severity.
const (
	incidentEvery  = time.Hour
	incidentLength = time.Minute
	incidentFactor = 20
)

// Outcome is how a run ended.
type Outcome int

const (
	// Held: neither promoted nor rolled back within the horizon.
	Held Outcome = iota
	Promoted
	RolledBack
)

// Result is one run's outcome.
type Result struct {
	Outcome Outcome
	// Time runs from the revision's start to the verdict (promotion done,
	// or traffic back on stable); the horizon when held.
	Time time.Duration
	// Bad are the failed requests the canary's revision served to users:
	// until it was rolled back, or until the horizon (held, or promoted,
	// when it serves everyone).
	Bad float64
	// CanaryRequests are the requests it served before the verdict.
	CanaryRequests float64
}

// world is the cluster around Decide, and the traffic through it.
type world struct {
	rng      *rand.Rand
	policy   *rollout.Policy
	sc       Scenario
	rps      float64
	observed rollout.Observed
	status   v1alpha1.FlightStatus
	// canaryReadyAt and settledAt are when the canary's pods and the stable
	// Deployment's rollout are done (seconds); -1 when not under way.
	canaryReadyAt, settledAt int
	incidents                []int // starting seconds
	canary, stable           side
	// hist are the canary's counters at every decision, kept only for a
	// policy with threshold checks (nil otherwise): comparisons read both
	// sides' counters as they stand.
	hist         *history
	stableShares shares
	canaryShares shares
	// The load tester's runs in progress, the hooks' answers by call ID,
	// and the canary's requests and failures that were its load.
	runs    []*run
	answers map[string]rollout.CallResult
	// delivered are the notifications sent, as the engine reports them.
	delivered             map[string]rollout.DeliveryResult
	loadBad, loadRequests float64
	// measured are the metrics the last decision that measured asked for;
	// twoCalls measures only when asked, as the engine does (tests
	// compare the two).
	measured []analysis.Metric
	twoCalls bool
	// checks holds a decision's checks, for the next one to reuse: Decide
	// copies what it keeps of them.
	checks []analysis.Check
}

// Run plays one rollout of a new revision under policy p at rps requests
// per second in all, for at most horizon, seeded with seed.
func Run(p *rollout.Policy, sc Scenario, rps float64, horizon time.Duration, seed [2]uint64) Result {
	r, _ := play(p, sc, rps, horizon, seed, false)
	return r
}

// play is Run; twoCalls decides each look as the engine does, without
// measuring ahead.
func play(p *rollout.Policy, sc Scenario, rps float64, horizon time.Duration, seed [2]uint64, twoCalls bool) (Result, v1alpha1.FlightStatus) {
	w := &world{twoCalls: twoCalls,
		rng: rand.New(rand.NewPCG(seed[0], seed[1])), policy: p, sc: sc, rps: rps,
		canaryReadyAt: -1, settledAt: -1, canary: newSide(), stable: newSide(),
		stableShares: sharesOf(sc.Stable), canaryShares: sharesOf(sc.Canary),
		answers: map[string]rollout.CallResult{}, delivered: map[string]rollout.DeliveryResult{},
	}
	if measuresThresholds(p) {
		w.hist = &history{}
	}
	secs := int(horizon / time.Second)
	if sc.Incidents {
		for t := 0.0; ; {
			t += w.rng.ExpFloat64() * incidentEvery.Seconds()
			if t >= float64(secs) {
				break
			}
			w.incidents = append(w.incidents, int(t))
		}
	}
	w.observed = rollout.Observed{
		Namespace: "sim", Name: "app", UID: "sim-1",
		DesiredRevision: "r1", DeploymentRevision: "r1", DeploymentSettled: true,
		Weights:       traffic.Weights{Stable: 100},
		DesiredImages: []v1alpha1.ContainerImage{{Container: "app", Image: "app:1"}},
		StableImages:  []v1alpha1.ContainerImage{{Container: "app", Image: "app:1"}},
	}
	// Adopt the Deployment, then apply the new revision.
	for range 10 {
		w.decide(0)
		if w.status.Phase == v1alpha1.PhaseIdle {
			break
		}
	}
	w.observed.DesiredRevision = "r2"
	w.observed.DesiredImages = []v1alpha1.ContainerImage{{Container: "app", Image: "app:2"}}

	w.hist.record(0, w.canary)
	var served Result
	for t := 0; t < secs; {
		if w.settledAt >= 0 && t >= w.settledAt {
			w.observed.DeploymentSettled = true
		}
		if w.canaryReadyAt >= 0 && t >= w.canaryReadyAt && w.observed.CanaryReplicas > 0 {
			w.observed.CanaryReady, w.observed.CanaryAvailable = true, w.observed.CanaryReplicas
		}
		next := t + w.decide(t)
		switch w.status.Phase {
		case v1alpha1.PhaseSucceeded:
			// Promoted: from now on the revision serves everyone, until
			// the horizon (the expected count; nothing left to decide).
			rest := float64(secs-t) * w.rps * w.errorRate(true, t)
			return Result{Outcome: Promoted, Time: time.Duration(t) * time.Second, Bad: served.Bad + rest, CanaryRequests: served.CanaryRequests}, w.status
		case v1alpha1.PhaseRolledBack:
			if w.observed.Weights.Canary == 0 {
				return Result{Outcome: RolledBack, Time: time.Duration(t) * time.Second, Bad: served.Bad, CanaryRequests: served.CanaryRequests}, w.status
			}
		}
		// Traffic until the next decision, or the next thing the cluster
		// does on its own: the routing is constant until then.
		for _, at := range []int{w.canaryReadyAt, w.settledAt, w.nextRunEnd(t)} {
			if at > t && at < next {
				next = at
			}
		}
		next = min(next, secs)
		badBefore, reqBefore := w.canary.errors-w.loadBad, w.canary.requests-w.loadRequests
		w.serve(t, next)
		w.load(t, next)
		served.Bad += w.canary.errors - w.loadBad - badBefore
		served.CanaryRequests += w.canary.requests - w.loadRequests - reqBefore
		w.hist.record(next, w.canary)
		t = next
	}
	served.Outcome, served.Time = Held, horizon
	return served, w.status
}

// measuresThresholds reports whether a run of p may measure a threshold
// check, over an interval of the canary's past counters (see history): a
// metric of the policy that is not a comparison, or a mirror's check.
func measuresThresholds(p *rollout.Policy) bool {
	return p.Mirror != nil && p.Mirror.Check != nil ||
		slices.ContainsFunc(p.Metrics, func(m analysis.Metric) bool { return !m.IsComparison() })
}

// errorRate is a side's error rate at second t.
func (w *world) errorRate(canary bool, t int) float64 {
	p := w.sc.StableErrors
	if canary {
		p *= w.sc.CanaryErrorFactor
	}
	for _, start := range w.incidents {
		if t >= start && t < start+int(incidentLength/time.Second) {
			p *= incidentFactor
			break
		}
	}
	return math.Min(p, 1)
}

// serve sends the traffic of seconds [from, to) through the routing as it
// stands, in pieces cut where an incident starts or ends.
func (w *world) serve(from, to int) {
	for from < to {
		end := to
		for _, start := range w.incidents {
			for _, edge := range []int{start, start + int(incidentLength/time.Second)} {
				if edge > from && edge < end {
					end = edge
				}
			}
		}
		total := poisson(w.rng, w.rps*float64(end-from))
		toCanary := 0.0
		if w.observed.CanaryReady {
			toCanary = binomial(w.rng, total, float64(w.observed.Weights.Canary)/100)
		}
		w.canary.serve(w.rng, toCanary, w.errorRate(true, from), w.canaryShares)
		w.stable.serve(w.rng, total-toCanary, w.errorRate(false, from), w.stableShares)
		from = end
	}
}

// decide runs Decide as the engine does (again with the checks when it asks
// for them), applies the actions as the executor and Kubernetes would, and
// returns in how many seconds to decide again.
func (w *world) decide(t int) int {
	now := epoch.Add(time.Duration(t) * time.Second)
	in := rollout.Input{Now: now, Policy: w.policy, Status: w.status, Observed: w.observed, Calls: w.answers, Delivered: w.delivered, Checks: w.checks[:0]}
	// Measure ahead what the last decision that measured asked for: a
	// decision that judges those metrics decides at once, one that judges
	// others asks for them, and one that judges none leaves them out.
	// Either way it decides as the engine's two calls would.
	if !w.twoCalls {
		for _, m := range w.measured {
			in.Checks = append(in.Checks, w.measure(m, t, now))
		}
	}
	d := rollout.Decide(in)
	if d.NeedChecks {
		in.Checks = in.Checks[:0]
		for _, m := range d.Measure {
			in.Checks = append(in.Checks, w.measure(m, t, now))
		}
		w.measured = d.Measure
		d = rollout.Decide(in)
	}
	w.checks = in.Checks[:0]
	w.status = d.Status
	for _, a := range d.Actions {
		w.apply(a, t)
	}
	if d.RequeueAfter <= 0 {
		return int((5 * time.Minute) / time.Second)
	}
	return max(1, int(math.Ceil(d.RequeueAfter.Seconds())))
}

// epoch is when every run starts; only differences matter.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Seconds the cluster takes: pods to become ready, a Deployment to roll.
const (
	canaryStartup = 5
	stableRollout = 10
)

func (w *world) apply(a rollout.Action, t int) {
	o := &w.observed
	switch a := a.(type) {
	case rollout.SetWeights:
		o.Weights = a.Weights
	case rollout.ReleaseRouting:
		o.Weights = traffic.Weights{Stable: 100}
	case rollout.EnsureCanary:
		if o.CanaryRevision != a.Revision || o.CanaryReplicas == 0 {
			o.CanaryRevision, o.CanaryReplicas, o.CanaryReady, o.CanaryAvailable = a.Revision, 1, false, 0
			w.canaryReadyAt = t + canaryStartup
		}
	case rollout.CallHook:
		w.call(a, t)
	case rollout.Deliver:
		// Slack and notification hooks answer at once, as the engine's
		// executor reports a delivery done.
		w.delivered[a.Delivery.ID] = rollout.DeliveryResult{Delivered: true, Attempts: 1, At: epoch.Add(time.Duration(t) * time.Second)}
	case rollout.ScaleCanaryDown, rollout.DeleteCanary:
		o.CanaryReplicas, o.CanaryReady, o.CanaryAvailable = 0, false, 0
	case rollout.SetStablePaused:
		o.DeploymentPaused = a.Paused
		if !a.Paused && o.DeploymentRevision != o.DesiredRevision {
			o.DeploymentRevision, o.DeploymentSettled = o.DesiredRevision, false
			o.StableImages = o.DesiredImages
			w.settledAt = t + stableRollout
		}
	}
}

// Scenarios are the standard set: stable fails 0.5% of requests, with a
// p50 of 20 ms (p95 63 ms, p99 100 ms); the canary is as good (with and
// without shared incidents), 15 times worse, twice as bad, or as good at
// its median but three times slower at its 99th percentile.
func Scenarios() []Scenario {
	base := Latency{P50: 20, Sigma: 0.7}
	return []Scenario{
		{Name: "A/A: the canary as good as stable", StableErrors: 0.005, CanaryErrorFactor: 1, Stable: base, Canary: base},
		{Name: "A/A with incidents hitting both (about hourly, 20x errors for a minute)", StableErrors: 0.005, CanaryErrorFactor: 1, Incidents: true, Stable: base, Canary: base},
		{Name: "15x worse (7.5% errors)", StableErrors: 0.005, CanaryErrorFactor: 15, Stable: base, Canary: base},
		{Name: "2x worse (1% errors)", StableErrors: 0.005, CanaryErrorFactor: 2, Stable: base, Canary: base},
		{Name: "tail latency: same p50, p99 about 3x", StableErrors: 0.005, CanaryErrorFactor: 1, Stable: base, Canary: Latency{P50: 20, Sigma: 1.2}},
	}
}
