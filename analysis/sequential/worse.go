package sequential

import (
	"errors"
	"fmt"
	"math"
)

// Ratios are the alternatives the Worse e-process mixes, equally weighted:
// the canary's bad-event rate as a multiple of stable's. Below 1.25 a
// regression is too small to find before a rollout ends at the traffic
// fledge sees; above 50 every canary request fails anyway (the largest
// ratio catches all of them). Log-spaced, so each is within about 60% of
// its neighbours and no ratio in between loses much power.
var Ratios = []float64{1.25, 1.6, 2, 3, 5, 8, 13, 20, 32, 50}

// Look is what one look measured for one rate: each side's requests and
// bad events (failed, or slower than a bound) over the same time. Counts
// are increments since the previous look, not totals.
type Look struct {
	CanaryRequests, CanaryBad float64
	StableRequests, StableBad float64
}

// Check refuses counts no measurement can produce. It is called before a
// look is taken into evidence, so that broken data never moves a verdict.
func (l Look) Check() error {
	for _, v := range []struct {
		name string
		v    float64
	}{{"canary requests", l.CanaryRequests}, {"canary bad", l.CanaryBad}, {"stable requests", l.StableRequests}, {"stable bad", l.StableBad}} {
		if math.IsNaN(v.v) || math.IsInf(v.v, 0) {
			return fmt.Errorf("%s is %g", v.name, v.v)
		}
		if v.v < 0 {
			return fmt.Errorf("%s went down by %g (a counter reset?)", v.name, -v.v)
		}
	}
	if l.CanaryBad > l.CanaryRequests {
		return fmt.Errorf("canary bad (%g) exceeds canary requests (%g)", l.CanaryBad, l.CanaryRequests)
	}
	if l.StableBad > l.StableRequests {
		return fmt.Errorf("stable bad (%g) exceeds stable requests (%g)", l.StableBad, l.StableRequests)
	}
	return nil
}

// Worse is the evidence that the canary's rate is higher than stable's:
// for each of Ratios, the log likelihood ratio of that ratio against 1,
// summed over looks. Its zero value is "no evidence yet". It is the whole
// state of the e-process, small enough to persist in a Flight's status.
//
// +k8s:deepcopy-gen=true
type Worse struct {
	LogLR []float64 `json:"logLR,omitempty"`
}

// ErrRatios: a persisted Worse was computed over another grid of ratios;
// its evidence cannot be continued.
var ErrRatios = errors.New("evidence computed over another grid of ratios")

// Observe takes one look into evidence. Only looks with bad events on
// either side carry any: given how many there were, who they belong to is
// what tells the canary from stable. The look must pass Check.
func (w *Worse) Observe(l Look) error {
	if err := l.Check(); err != nil {
		return err
	}
	if w.LogLR == nil {
		w.LogLR = make([]float64, len(Ratios))
	}
	if len(w.LogLR) != len(Ratios) {
		return ErrRatios
	}
	n, m := l.CanaryRequests, l.StableRequests
	x, y := l.CanaryBad, l.StableBad
	if x+y == 0 || n == 0 || m == 0 {
		// No bad events, or one side served nothing: every bad event is
		// that side's under any ratio, so the look says nothing of it.
		return nil
	}
	theta0 := n / (n + m)
	for j, rho := range Ratios {
		theta := rho * n / (rho*n + m)
		w.LogLR[j] += x*math.Log(theta/theta0) + y*math.Log((1-theta)/(1-theta0))
	}
	return nil
}

// LogE is the log of the e-value: the mixture's likelihood ratio against
// "the canary is no worse than stable". Under that hypothesis it exceeds
// log(1/alpha) at any time with probability at most alpha.
func (w Worse) LogE() float64 {
	if len(w.LogLR) == 0 {
		return 0
	}
	hi := math.Inf(-1)
	for _, v := range w.LogLR {
		hi = math.Max(hi, v)
	}
	var sum float64
	for _, v := range w.LogLR {
		sum += math.Exp(v - hi)
	}
	return hi + math.Log(sum/float64(len(w.LogLR)))
}

// Shown reports whether the canary is shown worse than stable at level
// alpha.
func (w Worse) Shown(alpha float64) bool { return w.LogE() >= math.Log(1/alpha) }

// LikeliestRatio is the ratio of Ratios the evidence favours most (1 when
// it favours none), for messages.
func (w Worse) LikeliestRatio() float64 {
	best, ratio := 0.0, 1.0
	for j, v := range w.LogLR {
		if v > best {
			best, ratio = v, Ratios[j]
		}
	}
	return ratio
}

// E is the e-value itself (+Inf when it is beyond a float).
func (w Worse) E() float64 { return math.Exp(w.LogE()) }
