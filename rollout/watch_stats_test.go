package rollout

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A late regression (after nine healthy minutes) is caught within a
// couple of looks: each window is judged on its own counts too, so the
// healthy time before does not dilute it.
func TestALateRegressionIsNotDilutedByTheHealthyTimeBefore(t *testing.T) {
	now := epoch.Add(time.Hour)
	w := newWatchWorld(t, now)
	w.in.Policy.PostPromotion = 20 * time.Minute
	w.promoted(now)
	start := w.in.Now
	const late = 9 * time.Minute
	var revertedAt time.Duration
	for s := 10 * time.Second; s <= 15*time.Minute && revertedAt == 0; s += 10 * time.Second {
		w.served.Requests += 1000 // 100 rps
		if s > late {
			w.served.Bad += 50 // 5%
		} else {
			w.served.Bad += 5 // 0.5%, as r1
		}
		w.at(start, s)
		w.decide()
		if w.in.Status.Watch.State == v1alpha1.WatchReverted {
			revertedAt = s
		}
	}
	if revertedAt == 0 || revertedAt-late > 30*time.Second {
		t.Fatalf("a regression from +%s reverted at +%s (%s), want within 30 s", late, revertedAt, w.in.Status.Message)
	}
	if !strings.Contains(w.in.Status.Message, "in the last") {
		t.Errorf("message %q: want the window's counts named", w.in.Status.Message)
	}
	t.Logf("regression from +%s, reverted %s later: %s", late, revertedAt-late, w.in.Status.Message)
}

// False alarms: a promoted revision as good as the previous one (0.5%
// errors before and after, Poisson traffic at 20 rps, a look every 10 s
// for 30 minutes, both tests and all their windows) is reverted in at most
// alpha (1%) of 400 seeded runs, plus a tolerance of 1.5 points for the
// runs' own noise.
func TestAWatchOfAnEquallyGoodRevisionRarelyReverts(t *testing.T) {
	if testing.Short() {
		t.Skip("400 simulated watches")
	}
	const runs = 400
	reverted := 0
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 7))
		now := epoch.Add(time.Hour)
		w := newWatchWorld(t, now)
		w.in.Policy.PostPromotion = 30 * time.Minute
		w.in.Status.Evidence[0].Stable = sequential.Counts{Requests: 20000, Bad: float64(binomialDraw(rng, 20000, 0.005))}
		w.promoted(now)
		start := w.in.Now
		for s := 10 * time.Second; w.in.Status.Watch.State == v1alpha1.WatchWatching; s += 10 * time.Second {
			n := poissonDraw(rng, 200)
			w.served.Requests += float64(n)
			w.served.Bad += float64(binomialDraw(rng, n, 0.005))
			w.at(start, s)
			w.decide()
		}
		if w.in.Status.Watch.State == v1alpha1.WatchReverted {
			reverted++
		}
	}
	rate := float64(reverted) / runs
	t.Logf("%d of %d watches of an equally good revision reverted (%.2g%%)", reverted, runs, 100*rate)
	if rate > 0.01+0.015 {
		t.Errorf("%d of %d reverted: above alpha 1%% plus the tolerance", reverted, runs)
	}
}

func poissonDraw(rng *rand.Rand, mean float64) int {
	// Knuth's, in pieces of 30 so that exp(-mean) stays representable.
	n := 0
	for mean > 0 {
		m := min(mean, 30)
		mean -= m
		l, p := math.Exp(-m), 1.0
		for {
			p *= rng.Float64()
			if p < l {
				break
			}
			n++
		}
	}
	return n
}

func binomialDraw(rng *rand.Rand, n int, p float64) int {
	k := 0
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return k
}
