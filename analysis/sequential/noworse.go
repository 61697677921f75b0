package sequential

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/fledgehq/fledge/analysis/internal/memo"
)

// Promotion is the evidence that the canary's rate is at most stable's
// plus a margin (or times a ratio): a test supermartingale under "the
// canary is worse than that", built by betting on paired requests
// (Waudby-Smith and Ramdas, "Estimating means of bounded random variables
// by betting", JRSS B 2024; Shafer, "Testing by betting", JRSS A 2021).
//
// A stratum's requests are put in a random order on each side and cut
// into groups of one request of the side that served fewer against b of
// the other (b the ratio of their counts): group g's canary share of bad
// events X and stable's Y give Z = X - r*Y - margin (r the ratio, or 1),
// whose mean is at least 0 whenever the canary is as bad as the null says
// (at least r times stable's rate plus the margin). Each group multiplies
// the evidence by 1 - lambda*Z, lambda >= 0 chosen from the strata before,
// which has an expected value of at most 1 under that null: the product
// reaches 1/alpha with probability at most alpha (Ville's inequality),
// however often it is looked at. One test of the difference, instead of
// a confidence sequence for each side compared: a healthy canary is shown
// no worse than a 1-point margin after about half the requests.
//
// The order is drawn from a seed that does not depend on any outcome, so a
// decision is reproducible, and the groups are as random as the requests.
//
// +k8s:deepcopy-gen=true
type Promotion struct {
	// LogE is the log of the e-value.
	LogE float64 `json:"logE"`
	// Margin and Ratio are what it was computed for: evidence for one
	// margin is none for another.
	Margin float64 `json:"margin,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"`
	// Pending are the current stratum's looks, summed, until it closes
	// (as Worse's); Stratum names it; Before are both sides' totals
	// before it, from which its bet is sized.
	Pending *Look  `json:"pending,omitempty"`
	Stratum int32  `json:"stratum,omitempty"`
	Before  *Look  `json:"before,omitempty"`
	Seed    uint64 `json:"seed,omitempty"`
}

// Observe takes one look, made while the traffic was split as stratum
// says, into evidence. before are both sides' totals before the look.
// A change of margin or ratio starts the evidence over. The look must pass
// Check.
func (e *Promotion) Observe(l Look, before Look, stratum int32, margin, ratio float64) {
	if e.Margin != margin || e.Ratio != ratio {
		*e = Promotion{Margin: margin, Ratio: ratio, Seed: e.Seed}
	}
	if e.Pending != nil && e.Stratum != stratum {
		e.close()
	}
	if e.Pending == nil {
		looks := &[2]Look{{}, before} // in one allocation
		e.Pending, e.Before = &looks[0], &looks[1]
	}
	*e.Pending, e.Stratum = e.Pending.add(l), stratum
	if e.Pending.CanaryRequests >= StratumRequests && e.Pending.StableRequests >= StratumRequests {
		e.close()
	}
}

// Shown reports whether the canary is shown no worse at level alpha.
func (e Promotion) Shown(alpha float64) bool { return e.LogE >= math.Log(1/alpha) }

// Needed estimates how many more canary requests it takes to show the
// canary no worse at level alpha, if both sides go on failing as they have
// (total is what each has served so far, with the current split): the
// evidence still missing over what each group adds on average. It reports
// false when, at those rates, the evidence would not grow: the canary
// looks worse than its margin so far.
func (e Promotion) Needed(total Look, alpha float64) (float64, bool) {
	// Of the evidence, it reads LogE, Margin and Ratio.
	k := bits[[8]uint64](e.LogE, e.Margin, e.Ratio, total.CanaryRequests, total.CanaryBad, total.StableRequests, total.StableBad, alpha)
	if r, ok := neededMemo.Get(k); ok {
		return memo.Float(r[0]), r[1] != 0
	}
	n, ok := e.needed(total, alpha)
	r := [2]uint64{memo.Bits(n), 0}
	if ok {
		r[1] = 1
	}
	neededMemo.Put(k, r)
	return n, ok
}

// needed is Needed, computed.
func (e Promotion) needed(total Look, alpha float64) (float64, bool) {
	missing := math.Log(1/alpha) - e.LogE
	if missing <= 0 {
		return 0, true
	}
	n, m := total.CanaryRequests, total.StableRequests
	if n < 1 || m < 1 {
		return 0, false
	}
	r, d := 1.0, e.Margin
	if e.Ratio > 0 {
		r, d = e.Ratio, 0
	}
	a, b := 1.0, math.Floor(m/n)
	if m < n {
		a, b = math.Floor(n/m), 1
	}
	pc := (total.CanaryBad + PromotionPrior.A) / (n + PromotionPrior.A + PromotionPrior.B)
	ps := (total.StableBad + PromotionPrior.A) / (m + PromotionPrior.A + PromotionPrior.B)
	var buf [16]atom
	lambda, atoms := bet(buf[:0], pc, ps, a, b, r, d)
	if lambda <= 0 {
		return 0, false
	}
	growth := 0.0
	for _, at := range atoms {
		growth += at.p * math.Log1p(-lambda*at.z)
	}
	if growth <= 0 {
		return 0, false
	}
	return math.Ceil(a * missing / growth), true
}

func (e *Promotion) close() {
	l, before := *e.Pending, *e.Before
	e.Pending, e.Before = nil, nil
	e.Seed++
	n, m := math.Round(l.CanaryRequests), math.Round(l.StableRequests)
	x, y := math.Min(math.Round(l.CanaryBad), n), math.Min(math.Round(l.StableBad), m)
	if n < 1 || m < 1 {
		return
	}
	r, d := 1.0, e.Margin
	if e.Ratio > 0 {
		r, d = e.Ratio, 0
	}
	// Groups: a canary requests against b stable ones.
	a, b := 1.0, math.Floor(m/n)
	groups := n
	if m < n {
		a, b, groups = math.Floor(n/m), 1, m
	}
	pc := (before.CanaryBad + PromotionPrior.A) / (before.CanaryRequests + PromotionPrior.A + PromotionPrior.B)
	ps := (before.StableBad + PromotionPrior.A) / (before.StableRequests + PromotionPrior.A + PromotionPrior.B)
	lambda := betSize(pc, ps, a, b, r, d)
	if lambda <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(e.Seed, uint64(n)<<20^uint64(m)))
	var cb, sb [smallPlace]groupCount
	canaryBad := place(cb[:0], rng, x, n, a*groups, a)
	stableBad := place(sb[:0], rng, y, m, b*groups, b)
	// The groups either side's bad events fell in, in the groups' order: a
	// sum in any other order is not reproducible to the last bit, and a
	// seeded run must be.
	slices.SortFunc(canaryBad, groupCount.cmp)
	slices.SortFunc(stableBad, groupCount.cmp)
	touched := 0
	for i, j := 0, 0; i < len(canaryBad) || j < len(stableBad); touched++ {
		switch {
		case j == len(stableBad) || i < len(canaryBad) && canaryBad[i].group < stableBad[j].group:
			i++
		case i == len(canaryBad) || stableBad[j].group < canaryBad[i].group:
			j++
		default:
			i, j = i+1, j+1
		}
	}
	logE := (groups - float64(touched)) * math.Log1p(lambda*d)
	for i, j := 0, 0; i < len(canaryBad) || j < len(stableBad); {
		var xg, yg float64 // the group's bad events on each side
		switch {
		case j == len(stableBad) || i < len(canaryBad) && canaryBad[i].group < stableBad[j].group:
			xg = canaryBad[i].count
			i++
		case i == len(canaryBad) || stableBad[j].group < canaryBad[i].group:
			yg = stableBad[j].count
			j++
		default:
			xg, yg = canaryBad[i].count, stableBad[j].count
			i, j = i+1, j+1
		}
		z := xg/a - r*yg/b - d
		logE += math.Log1p(-lambda * z)
	}
	e.LogE += logE
}

// groupCount is how many bad events fell in a group.
type groupCount struct{ group, count float64 }

func (g groupCount) cmp(o groupCount) int { return cmp.Compare(g.group, o.group) }

// smallPlace is how many bad events place keeps track of in arrays (on
// the stack), searched through; beyond, in maps.
const smallPlace = 16

// place puts k bad events at random among n requests, of which the first
// used are grouped size at a time, and counts them by group: appended to
// out, in no order.
func place(out []groupCount, rng *rand.Rand, k, n, used, size float64) []groupCount {
	if k <= 0 {
		return out
	}
	if k > smallPlace {
		for g, c := range placeMany(rng, k, n, used, size) {
			out = append(out, groupCount{g, c})
		}
		return out
	}
	// A partial Fisher-Yates shuffle over a sparse array: k draws, each
	// swapping two positions (placeMany's, in a short list).
	var swapped [2 * smallPlace]struct{ i, v float64 }
	entries := swapped[:0]
	at := func(i float64) float64 {
		for _, e := range entries {
			if e.i == i {
				return e.v
			}
		}
		return i
	}
	set := func(i, v float64) {
		for x := range entries {
			if entries[x].i == i {
				entries[x].v = v
				return
			}
		}
		entries = append(entries, struct{ i, v float64 }{i, v})
	}
	for i := 0.0; i < k; i++ {
		j := i + math.Floor(rng.Float64()*(n-i))
		vi, vj := at(i), at(j)
		set(i, vj)
		set(j, vi)
		if pos := vj; pos < used {
			g := math.Floor(pos / size)
			found := false
			for x := range out {
				if out[x].group == g {
					out[x].count++
					found = true
					break
				}
			}
			if !found {
				out = append(out, groupCount{g, 1})
			}
		}
	}
	return out
}

// placeMany is place for many bad events, in maps.
func placeMany(rng *rand.Rand, k, n, used, size float64) map[float64]float64 {
	out := map[float64]float64{}
	if k <= 0 {
		return out
	}
	// A partial Fisher-Yates shuffle over a sparse array: k draws.
	swapped := map[float64]float64{}
	at := func(i float64) float64 {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i
	}
	for i := 0.0; i < k; i++ {
		j := i + math.Floor(rng.Float64()*(n-i))
		vi, vj := at(i), at(j)
		swapped[i], swapped[j] = vj, vi
		if pos := vj; pos < used {
			out[math.Floor(pos/size)]++
		}
	}
	return out
}

// betSize is the lambda that maximizes the expected log of 1 - lambda*Z
// when the canary fails at pc and stable at ps (estimates from the strata
// before): the bet that grows fastest if those estimates are right, and
// none when they say the canary is worse than the margin.
func betSize(pc, ps, a, b, r, d float64) float64 {
	var buf [16]atom
	lambda, _ := bet(buf[:0], pc, ps, a, b, r, d)
	return lambda
}

// bet is betSize, with Z's distribution it was sized for (appended to
// atoms, a buffer of the caller's; none when the bet is none), for a
// caller that reads both.
func bet(atoms []atom, pc, ps, a, b, r, d float64) (float64, []atom) {
	if pc-r*ps-d >= 0 {
		return 0, atoms
	}
	// Z's distribution, over the few bad-event counts that matter.
	atoms = outcomes(atoms, pc, ps, a, b, r, d)
	return bestBet(atoms, d), atoms
}

// bestBet is betSize's lambda for Z's distribution, atoms.
func bestBet(atoms []atom, d float64) float64 {
	hi := 0.95 / (1 - d) // 1 - lambda*Z stays above 0.05 at Z's highest
	// The growth, E[log(1 - lambda*Z)], is concave in lambda: its slope,
	// E[-Z / (1 - lambda*Z)], falls from -E[Z] > 0 at 0. The best lambda is
	// where the slope crosses 0, or hi if it never does: found by Newton's
	// method on the slope, each step kept within the bracket the slope's
	// signs so far give (a step that would leave it halves it instead),
	// to about a billionth of hi, as bisection's 30 halvings did, in a
	// handful of steps.
	slope := func(lambda float64) (g, dg float64) {
		for _, at := range atoms {
			q := at.z / (1 - lambda*at.z)
			g -= at.p * q
			dg -= at.p * q * q
		}
		return g, dg
	}
	if g, _ := slope(hi); g >= 0 {
		return hi
	}
	lo, up := 0.0, hi
	lambda := 0.0
	for range 60 {
		g, dg := slope(lambda)
		if g > 0 {
			lo = lambda
		} else {
			up = lambda
		}
		next := lambda - g/dg
		if !(next > lo && next < up) {
			next = (lo + up) / 2
		}
		if math.Abs(next-lambda) <= hi*1e-9/4 || up-lo <= hi*1e-9/4 {
			return next
		}
		lambda = next
	}
	return lambda
}

// atom is one value of a group's Z, with its probability.
type atom struct{ z, p float64 }

// outcomes is Z's distribution over the few bad-event counts that matter,
// when a group of a canary requests failing at pc and b stable ones
// failing at ps is judged against ratio r and margin d. They are appended
// to atoms (a buffer of the caller's).
func outcomes(atoms []atom, pc, ps, a, b, r, d float64) []atom {
	// A side with many requests to a group is taken at its mean: the bet
	// need only be near the best one; any bet is valid. share is the value
	// of a side's k-th term, probs are their probabilities.
	share := func(n, p float64, k int) float64 {
		if n > 64 {
			return p
		}
		return float64(k) / n
	}
	probs := func(buf []float64, n, p float64) []float64 {
		if n > 64 {
			return append(buf, 1)
		}
		return binomialTerms(buf, n, p)
	}
	var xb, yb [65]float64 // n+1 terms at most, n <= 64
	xp := probs(xb[:0], a, pc)
	yp := probs(yb[:0], b, ps)
	for i := range xp {
		for j := range yp {
			atoms = append(atoms, atom{share(a, pc, i) - r*share(b, ps, j) - d, xp[i] * yp[j]})
		}
	}
	return atoms
}

// binomialTerms are P(K = k) for K ~ Bin(n, p), from k = 0 until the rest
// is below 1e-9 of the whole, appended to out.
func binomialTerms(out []float64, n, p float64) []float64 {
	term := math.Pow(1-p, n)
	sum := 0.0
	for k := 0.0; k <= n; k++ {
		out = append(out, term)
		sum += term
		if 1-sum < 1e-9 {
			break
		}
		term *= (n - k) / (k + 1) * p / (1 - p)
	}
	return out
}
