package sim

import (
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/rollout"
)

func TestHistogramQuantileInterpolatesAsPrometheusDoes(t *testing.T) {
	cumulative := make([]float64, len(Buckets))
	// 100 requests: 50 in (10, 25], 40 in (25, 50], 10 in (50, 100].
	for i, b := range Buckets {
		switch {
		case b >= 100:
			cumulative[i] = 100
		case b >= 50:
			cumulative[i] = 90
		case b >= 25:
			cumulative[i] = 50
		}
	}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.5, 25},   // the rank falls on a bucket's upper count
		{0.7, 37.5}, // halfway through (25, 50]
		{0.95, 75},  // halfway through (50, 100]
	} {
		if got := histogramQuantile(tc.q, cumulative, 100); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("q %g: %g, want %g", tc.q, got, tc.want)
		}
	}
	if got := histogramQuantile(0.95, cumulative, 0); !math.IsNaN(got) {
		t.Errorf("no requests: %g, want NaN (no data)", got)
	}
	slow := make([]float64, len(Buckets)) // every request slower than the last bound
	if got := histogramQuantile(0.5, slow, 10); got != Buckets[len(Buckets)-1] {
		t.Errorf("all in +Inf: %g, want the highest finite bound", got)
	}
}

func TestLatencyBucketSharesAddUpToOne(t *testing.T) {
	for _, l := range []Latency{{P50: 20, Sigma: 0.7}, {P50: 300, Sigma: 2}} {
		sum := 0.0
		for _, p := range l.bucketShares() {
			if p < 0 {
				t.Fatalf("%+v: a negative share", l)
			}
			sum += p
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("%+v: shares add up to %g", l, sum)
		}
	}
}

var testRules = `
policies:
  standard:
    steps: [10, 25, 50]
    interval: 1m
    failureLimit: 2
    metrics:
    - {name: success-rate, min: 0.99, minSamples: 100}
    - {name: latency-p95, max: 500, minSamples: 100}
`

func testPolicy(t *testing.T) *rollout.Policy {
	t.Helper()
	ps, err := rollout.ParseConfig([]byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	return ps["standard"]
}

func TestARunIsAFunctionOfItsSeed(t *testing.T) {
	p := testPolicy(t)
	sc := Scenarios()[1] // with incidents: the most randomness
	a := Run(p, sc, 10, time.Hour, [2]uint64{7, 1})
	b := Run(p, sc, 10, time.Hour, [2]uint64{7, 1})
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("the same seed gave two results:\n%s", diff)
	}
}

// The model drives the real core to the verdicts the policy gives: at 100
// rps a healthy canary is promoted through 10/25/50 in about three minutes
// and a 15x worse one rolled back at its second failed check; at 1 rps no
// step ever has its 100 requests, and the rollout holds to the horizon.
func TestTheRealCoreDecidesInTheModel(t *testing.T) {
	p := testPolicy(t)
	aa, bad := Scenarios()[0], Scenarios()[2]
	if r := Run(p, aa, 100, 2*time.Hour, [2]uint64{1, 1}); r.Outcome != Promoted || r.Time < 3*time.Minute || r.Time > 4*time.Minute {
		t.Errorf("healthy at 100 rps: %+v, want promoted after 3 to 4 minutes", r)
	}
	if r := Run(p, bad, 100, 2*time.Hour, [2]uint64{1, 2}); r.Outcome != RolledBack || r.Time > 3*time.Minute || r.Bad == 0 {
		t.Errorf("15x worse at 100 rps: %+v, want rolled back within 3 minutes, having served some bad responses", r)
	}
	if r := Run(p, aa, 1, 2*time.Hour, [2]uint64{1, 3}); r.Outcome != Held || r.Time != 2*time.Hour || r.CanaryRequests < 500 {
		t.Errorf("healthy at 1 rps: %+v, want held for the whole horizon while serving its share", r)
	}
}

func TestAStudyIsTheSameHoweverItIsScheduled(t *testing.T) {
	s := Study{Rules: []Rule{{Name: "standard", Policy: testPolicy(t)}}, Scenarios: Scenarios()[:1], Rates: []float64{100}, Runs: 20, Horizon: time.Hour, Seed: 3}
	first, second := s.Play(), s.Play()
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("two plays of one study differ:\n%s", diff)
	}
}

// Measuring ahead decides each look in one call to Decide instead of the
// engine's two (one that asks for checks, one with them): the runs must be
// the same, to the bad response, for every kind of policy (thresholds,
// comparisons, the load tester on demand, the shipped ones), scenario and
// traffic level.
func TestMeasuringAheadDecidesAsTheEngineDoes(t *testing.T) {
	policies := map[string]*rollout.Policy{"thresholds": testPolicy(t)}
	for _, rules := range []string{compareRules, loadRules} {
		ps, err := rollout.ParseConfig([]byte(rules))
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(policies, ps)
	}
	shipped := shippedPolicies(t)
	policies["shipped standard"], policies["shipped careful"], policies["shipped quiet"] = shipped["standard"], shipped["careful"], shipped["quiet"]
	runs := 0
	for name, p := range policies {
		for i, sc := range Scenarios() {
			for _, rps := range []float64{0.2, 5, 100} {
				for run := range uint64(3) {
					seed := [2]uint64{uint64(i), run}
					ahead, aheadStatus := play(p, sc, rps, time.Hour, seed, false)
					engine, engineStatus := play(p, sc, rps, time.Hour, seed, true)
					if diff := cmp.Diff(engine, ahead); diff != "" {
						t.Errorf("%s, %s, %g rps, run %d: measuring ahead changed the run (-engine +ahead):\n%s", name, sc.Name, rps, run, diff)
					}
					// To the decision log's last message.
					if diff := cmp.Diff(engineStatus, aheadStatus); diff != "" {
						t.Errorf("%s, %s, %g rps, run %d: measuring ahead changed the run (-engine +ahead):\n%s", name, sc.Name, rps, run, diff)
					}
					runs++
				}
			}
		}
	}
	t.Logf("%d pairs of runs", runs)
}

// shippedPolicies are deploy/policies.yaml's.
func shippedPolicies(t *testing.T) map[string]*rollout.Policy {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	ps, err := rollout.ParseConfig([]byte(cm.Data["policies.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

var compareRules = `
policies:
  compare:
    steps: [10, 25, 50]
    interval: 1m
    earlyPromotion: true
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    - {name: latency, slowerThan: 250ms, maxIncrease: 0.01}
`

// BenchmarkHeldComparison is the simulator's costliest run: a comparison
// at 0.05 rps, looking every 10 s for two hours without a verdict (720
// looks, each two decisions). make sim plays thousands of them.
func BenchmarkHeldComparison(b *testing.B) {
	ps, err := rollout.ParseConfig([]byte(compareRules))
	if err != nil {
		b.Fatal(err)
	}
	seed := uint64(0)
	for b.Loop() {
		seed++
		if r := Run(ps["compare"], Scenarios()[0], 0.05, 2*time.Hour, [2]uint64{1, seed}); r.Outcome != Held {
			b.Fatalf("run %d: %+v, want held", seed, r)
		}
	}
}

// Wald's bound, against values computed by hand from its formula: a 15x
// worse canary (7.5% against 0.5%) needs 38 requests on average at alpha
// 0.005 and beta 0.01, a 2x worse one 2,669, and a healthy one shown no
// worse than a 1-point margin at 95% 639.
func TestWaldBoundMatchesItsFormula(t *testing.T) {
	for _, c := range []struct{ p0, p1, alpha, want float64 }{
		{0.005, 0.075, 0.005, 38.2625},
		{0.005, 0.01, 0.005, 2669.36},
		{0.015, 0.005, 0.05, 638.567},
	} {
		if got := WaldBound(c.p0, c.p1, c.alpha, 0.01); math.Abs(got-c.want) > 1e-3*c.want {
			t.Errorf("WaldBound(%g, %g, %g) = %g, want %g", c.p0, c.p1, c.alpha, got, c.want)
		}
	}
	if got := WaldBound(0.01, 0.01, 0.01, 0.01); !math.IsInf(got, 1) {
		t.Errorf("equal rates: %g, want +Inf (no test can tell them apart)", got)
	}
}

var loadRules = `
webhookSecret: {name: hooks, key: hmac}
policies:
  loaded:
    steps: [10, 25, 50]
    interval: 1m
    earlyPromotion: true
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    webhooks:
    - name: load
      type: rollout
      when: notEnoughData
      url: http://loadtester/
      timeout: 45s
      metadata: {url: "http://app-canary/", stableUrl: "http://app-stable/", rate: "10", duration: 30s}
`

// The load tester loads both sides while the comparison cannot tell: at
// 0.05 rps, where no user traffic decides anything in two hours, a healthy
// canary is promoted and a 15x worse one rolled back within minutes; the
// load's failures reach the counters but are not counted as bad responses
// served to users.
func TestTheLoadTesterLetsTheComparisonDecideAtLowTraffic(t *testing.T) {
	ps, err := rollout.ParseConfig([]byte(loadRules))
	if err != nil {
		t.Fatal(err)
	}
	p := ps["loaded"]
	if r := Run(p, Scenarios()[0], 0.05, 2*time.Hour, [2]uint64{3, 1}); r.Outcome != Promoted || r.Time > 30*time.Minute {
		t.Errorf("healthy at 0.05 rps with load: %+v, want promoted within 30 minutes", r)
	}
	r := Run(p, Scenarios()[2], 0.05, 2*time.Hour, [2]uint64{3, 2})
	if r.Outcome != RolledBack || r.Time > 10*time.Minute {
		t.Errorf("15x worse at 0.05 rps with load: %+v, want rolled back within 10 minutes", r)
	}
	if r.Bad > r.CanaryRequests || r.CanaryRequests > 10 {
		t.Errorf("15x worse: %+v: the users' requests and failures must not include the load's", r)
	}
}

// A threshold policy's floor is minSamples over the first step's share of
// one interval: 100 / (5% x 60 s) for the standard policy fledge shipped
// before comparisons, 50 / (10% x 8 s) for the demo's; a policy of
// comparisons alone has none.
func TestFloorIsWhereTheFirstStepCanHoldItsSamples(t *testing.T) {
	ps, err := rollout.ParseConfig([]byte(`
policies:
  standard:
    steps: [5, 10, 25, 50]
    interval: 1m
    metrics:
    - {name: success-rate, min: 0.99, minSamples: 100}
    - {name: latency-p95, max: 500, minSamples: 20}
  demo:
    steps: [10, 25, 50]
    interval: 8s
    minInterval: 1s
    metrics: [{name: success-rate, min: 0.97, minSamples: 50}]
  compare:
    steps: [10, 50]
    metrics: [{name: error-rate}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"standard": 100 / (0.05 * 60), "demo": 62.5, "compare": 0} {
		if got := Floor(ps[name]); math.Abs(got-want) > 1e-9 {
			t.Errorf("Floor(%s) = %g, want %g", name, got, want)
		}
	}
}

// binomialWas is binomial as first written: a log for every gap.
func binomialWas(rng *rand.Rand, n, p float64) float64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case n*p > 200 && n*(1-p) > 200:
		return math.Min(n, math.Max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*rng.NormFloat64())))
	}
	logq := math.Log1p(-p)
	var k float64
	for i := 0.0; ; k++ {
		i += math.Floor(math.Log(1-rng.Float64())/logq) + 1
		if i > n {
			return k
		}
	}
}

// binomial knows most gaps without a log: it draws the same, and returns
// the same, as it did with one for every gap, leaving the generator where
// it did.
func TestBinomialDrawsWhatItAlwaysDid(t *testing.T) {
	pick := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		n := math.Floor(math.Exp(pick.Float64() * 7))
		p := []float64{pick.Float64(), 0.2, 0.5, 0.999, 1 - 1e-9, 0.19, pick.Float64() * 0.3, 0.986, 0.553}[i%9]
		a, b := rand.New(rand.NewPCG(uint64(i), 9)), rand.New(rand.NewPCG(uint64(i), 9))
		if got, want := binomial(a, n, p), binomialWas(b, n, p); got != want || a.Uint64() != b.Uint64() {
			t.Fatalf("Bin(%g, %g): %g, was %g (or the generator moved differently)", n, p, got, want)
		}
	}
	// Right at the bounds (v = q, q^2), about them, and anywhere.
	for i := range 200000 {
		p := 0.2 + 0.8*pick.Float64()
		if i%3 == 0 {
			p = []float64{0.2, 0.3, 0.5, 0.75, 0.9, 0.99, 1 - 1e-12}[i%7]
		}
		g := newGaps(p)
		q := math.Exp(g.logq)
		for _, v := range []float64{q, q * q, math.Exp(2 * g.logq), math.Nextafter(q, 0), math.Nextafter(q, 1), q * (1 + 2e-9), q * (1 - 2e-9),
			q * (1 + 3e-9), q * (1 - 3e-9), q * q * (1 + 2e-9), q * q * (1 - 3e-9), 1, pick.Float64(), q + (1-q)*pick.Float64(), q*q + (q-q*q)*pick.Float64()} {
			if v <= 0 || v > 1 {
				continue
			}
			if got, want := g.step(v), math.Floor(math.Log(v)/g.logq)+1; got != want {
				t.Fatalf("p %v, v %v: gap %g, want %g", p, v, got, want)
			}
		}
	}
}
