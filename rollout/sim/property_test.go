package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout"
)

// A canary exactly as good as stable is rolled back with probability at
// most alpha however the comparisons look: whatever the look interval (1 s
// to 30 s), the steps, the traffic (0.5 to 200 rps) and shared incidents.
// Each of 400 runs draws its own schedule and world, through the real
// Decide. The bound allowed is alpha plus three binomial standard
// deviations of the count at alpha (3.3 points at 400 runs and alpha 5%).
// An invalid test exceeds it many times over: with a fixed-sample z-test
// of the pooled rates in place of the e-process, read at every look at
// the same level, 177 of these 400 canaries were rolled back (tried by
// hand once; the e-process rolled back 7).
func TestAnEqualCanaryIsRolledBackAtMostAlphaWhateverTheLookSchedule(t *testing.T) {
	const runs, alpha = 400, 0.05
	rng := rand.New(rand.NewPCG(20261202, 1))
	looks := []string{"1s", "2s", "5s", "10s", "30s"}
	stepSets := []string{"[50]", "[10, 50]", "[5, 10, 25, 50]", "[1, 2, 5, 10, 20, 30, 40, 50]"}
	rolledBack := 0
	for i := range runs {
		text := fmt.Sprintf(`
policies:
  p:
    steps: %s
    interval: %ds
    alpha: %g
    lookInterval: %s
    earlyPromotion: %v
    metrics:
    - {name: error-rate, maxIncrease: 0.001}
    - {name: latency, slowerThan: [50ms, 250ms], maxIncrease: 0.001}
`, stepSets[rng.IntN(len(stepSets))], 30+rng.IntN(90), alpha, looks[rng.IntN(len(looks))], rng.IntN(2) == 0)
		ps, err := rollout.ParseConfig([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		sc := Scenarios()[rng.IntN(2)] // A/A, with or without incidents
		rps := math.Exp(math.Log(0.5) + rng.Float64()*math.Log(400))
		r := Run(ps["p"], sc, rps, 10*time.Minute, [2]uint64{uint64(i), 7})
		if r.Outcome == RolledBack {
			rolledBack++
		}
	}
	limit := runs*alpha + 3*math.Sqrt(runs*alpha*(1-alpha))
	t.Logf("%d of %d A/A canaries rolled back (alpha %g, limit %.0f)", rolledBack, runs, alpha, limit)
	if float64(rolledBack) > limit {
		t.Errorf("%d of %d A/A canaries rolled back: above alpha %g plus three standard deviations (%.0f)", rolledBack, runs, alpha, limit)
	}
}
