package sequential

import (
	"errors"
	"fmt"
	"math"

	"github.com/fledgehq/fledge/analysis/internal/memo"
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
	CanaryRequests float64 `json:"canaryRequests"`
	CanaryBad      float64 `json:"canaryBad"`
	StableRequests float64 `json:"stableRequests"`
	StableBad      float64 `json:"stableBad"`
}

// add sums two looks.
func (l Look) add(o Look) Look {
	return Look{l.CanaryRequests + o.CanaryRequests, l.CanaryBad + o.CanaryBad, l.StableRequests + o.StableRequests, l.StableBad + o.StableBad}
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
// summed over strata. Its zero value is "no evidence yet". It is the whole
// state of the e-process, small enough to persist in a Flight's status.
//
// A stratum is a run of looks over which the traffic split stays as it
// was (one step), closed once both sides have served StratumRequests:
// its bad events are then attributed, given how many there were, by the
// requests each side served in it. At high traffic a look is a stratum.
// At low traffic a look often has no request on one side, or one or two
// on each, and attributing its bad events alone throws most of what they
// say away (a canary's bad response in a look where stable served nothing
// says nothing); pooled, they say it all.
//
// +k8s:deepcopy-gen=true
type Worse struct {
	LogLR []float64 `json:"logLR,omitempty"`
	// Pending are the current stratum's looks, summed, until it closes.
	Pending *Look `json:"pending,omitempty"`
	// Stratum names the pending looks' traffic split (the step).
	Stratum int32 `json:"stratum,omitempty"`
}

// StratumRequests is how many requests each side serves before a stratum
// closes: enough that the observed split is close to the true one, so that
// a bad event's attribution carries most of what it can; few enough that
// at 0.2 requests a second a stratum lasts about a minute.
var StratumRequests = 5.0

// ErrRatios: a persisted Worse was computed over another grid of ratios;
// its evidence cannot be continued.
var ErrRatios = errors.New("evidence computed over another grid of ratios")

// Observe takes one look, made while the traffic was split as stratum
// says, into evidence: it joins the pending looks of its stratum (closing
// those of another first), and closes the stratum once both sides have
// served enough. When a stratum closes depends on requests alone, never on
// bad events, so the e-process stays a supermartingale under "no worse".
// The look must pass Check.
func (w *Worse) Observe(l Look, stratum int32) error {
	if err := l.Check(); err != nil {
		return err
	}
	if w.LogLR == nil {
		w.LogLR = make([]float64, len(Ratios))
	}
	if len(w.LogLR) != len(Ratios) {
		return ErrRatios
	}
	if w.Pending != nil && w.Stratum != stratum {
		w.close()
	}
	if w.Pending == nil {
		w.Pending = &Look{}
	}
	*w.Pending, w.Stratum = w.Pending.add(l), stratum
	if w.Pending.CanaryRequests >= StratumRequests && w.Pending.StableRequests >= StratumRequests {
		w.close()
	}
	return nil
}

// close takes the pending stratum into evidence. Only bad events carry
// any: given how many there were, who they belong to is what tells the
// canary from stable.
func (w *Worse) close() {
	l := w.Pending
	w.Pending = nil
	n, m := l.CanaryRequests, l.StableRequests
	x, y := l.CanaryBad, l.StableBad
	if x+y == 0 || n == 0 || m == 0 {
		// No bad events, or one side served nothing: every bad event is
		// that side's under any ratio, so the stratum says nothing of it.
		return
	}
	theta0 := n / (n + m)
	for j, rho := range Ratios {
		theta := rho * n / (rho*n + m)
		w.LogLR[j] += x*math.Log(theta/theta0) + y*math.Log((1-theta)/(1-theta0))
	}
}

// LogE is the log of the e-value: the mixture's likelihood ratio against
// "the canary is no worse than stable". Under that hypothesis it exceeds
// log(1/alpha) at any time with probability at most alpha.
func (w Worse) LogE() float64 {
	if len(w.LogLR) == 0 {
		return 0
	}
	// Remembered by the ratios' evidence (and how many there are), which
	// changes only when a stratum with bad events closes.
	var k [12]uint64
	if len(w.LogLR) >= len(k) {
		return w.logE()
	}
	k[0] = uint64(len(w.LogLR))
	for i, v := range w.LogLR {
		k[i+1] = memo.Bits(v)
	}
	if v, ok := logEMemo.Get(k); ok {
		return memo.Float(v[0])
	}
	v := w.logE()
	logEMemo.Put(k, [1]uint64{memo.Bits(v)})
	return v
}

// logE is LogE, computed.
func (w Worse) logE() float64 {
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
