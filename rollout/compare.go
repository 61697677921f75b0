package rollout

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// Comparisons with stable are judged at every look, not once a round:
// their evidence accumulates from the canary's first request, across
// looks and steps, and stays valid however often it is examined
// (analysis/sequential). So a look every LookInterval reads both sides'
// counters and can roll a canary back the moment it is shown worse, and,
// with EarlyPromotion, promote it the moment every comparison shows it no
// worse than its margin. Threshold checks keep their rounds.
//
// A look's verdicts, per comparison:
//   - Fail: shown worse than stable at level alpha/k (k comparisons share
//     alpha). The canary is rolled back at once; failureLimit is for
//     threshold checks, whose single rounds can be wrong by chance.
//   - Pass: shown no worse than stable plus the margin.
//   - Inconclusive: neither yet. Steps still advance on their rounds, but
//     the last one promotes only once every comparison passes.
//   - Error: the counters could not be read, or went down (a pod
//     restarted): the look holds, the evidence so far is kept, and the
//     next look counts from the new counters.

// PromotionLevel bounds the probability that the comparisons show a
// canary exactly at its margin no worse than it (and so promote it).
// Alpha, a policy's, bounds false rollbacks, which cost a team a good
// release; a canary at its margin is by definition one the team accepts,
// and one worse than it is the Worse test's to catch. A 95% bound needs
// about two thirds of the evidence a 99% one does.
//
// The two questions split their levels differently among k comparisons.
// "Worse" rolls back if any comparison says so, so each asks at alpha/k
// (Bonferroni). "No worse" promotes only if every comparison says so: an
// intersection-union test, whose level is each part's, with no split
// (Berger, "Multiparameter hypothesis testing and acceptance sampling",
// Technometrics 1982).
const PromotionLevel = 0.05

// comparisons are the policy's comparison metrics, found once a decision.
// When every metric is one, as in most policies, they are the policy's own
// slice (clipped: the decision only reads them).
func (d *decider) comparisons() []analysis.Metric {
	if d.switched() {
		// After a blue/green switch stable serves nothing to compare with:
		// the comparisons judged the preview.
		return nil
	}
	if d.cmp == nil {
		ms := d.in.Policy.Metrics
		all := true
		for i := range ms {
			all = all && ms[i].IsComparison()
		}
		if all {
			d.cmp = slices.Clip(ms)
		} else {
			d.cmp = d.in.Policy.Comparisons()
		}
		if d.cmp == nil {
			d.cmp = []analysis.Metric{}
		}
	}
	return d.cmp
}

// baseline reads the comparisons' counters just before the canary's first
// traffic, so that their evidence counts from its first request: a look
// after it would lose what the canary served until then, which at low
// traffic is most of what there is to judge by, and at high traffic the
// bad responses that should have rolled it back sooner. It reports false
// when it asked for the counters (the decision is then taken again with
// them). A comparison whose counters cannot be read gets its baseline at
// its first look instead: traffic does not wait for Prometheus.
//
// If a canary served until shortly before, its last requests may not be
// in Prometheus yet, and the canary workload's counters are this
// revision's too: the first traffic waits until two scrape intervals
// after that canary's traffic ended, so that its requests are in the
// baseline rather than in this revision's evidence.
func (d *decider) baseline() bool {
	if len(d.comparisons()) == 0 || len(d.st.Evidence) > 0 {
		return true
	}
	if ended := d.st.CanaryTrafficEndedAt; ended != nil {
		until := ended.Add(2 * d.in.Policy.ScrapeInterval)
		if d.in.Now.Before(until) {
			d.st.Message = fmt.Sprintf("the canary's first traffic waits until %s: the previous canary's last requests reach Prometheus within two scrapes (scrapeInterval %s), and must count as its, not this revision's",
				until.UTC().Format(time.TimeOnly), d.in.Policy.ScrapeInterval)
			d.after(until.Sub(d.in.Now))
			return false
		}
	}
	checks, ok := d.checksFor(d.comparisons())
	if !ok {
		return false
	}
	t := d.now()
	for _, c := range checks {
		if metricIndex(d.comparisons(), c.Metric) >= 0 && c.Reading != nil && c.Outcome != analysis.Error {
			d.st.Evidence = append(d.st.Evidence, v1alpha1.Evidence{Metric: c.Metric, Last: *c.Reading, Since: &t})
		}
	}
	if len(d.st.Evidence) > 0 {
		d.st.LastLookAt = &t
	}
	return true
}

// look judges the comparisons between rounds.
func (d *decider) look() {
	checks, ok := d.checksFor(d.comparisons())
	if !ok {
		return
	}
	checks, failed := d.observeAll(checks)
	if len(failed) > 0 {
		d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("%s: %s", d.where(), describeComparisons(failed)), checks)
		return
	}
	if d.promoteEarly(checks, false) {
		return
	}
	d.st.Message = describeComparisonsAt(d.where(), checks)
	d.after(d.lookGap())
}

// checksFor returns the input's checks of the metrics ms, in the input's
// order, or asks for them (NeedChecks, Measure ms) unless there is one for
// each. Checks of the policy's other metrics are left out: a caller may
// measure more than a decision asks for (the simulator measures ahead, to
// decide once a look), and what is judged is the same either way.
func (d *decider) checksFor(ms []analysis.Metric) ([]analysis.Check, bool) {
	if len(d.in.Checks) > 0 {
		out := make([]analysis.Check, 0, len(ms))
		for i := range d.in.Checks {
			c := &d.in.Checks[i]
			if metricIndex(ms, c.Metric) >= 0 || metricIndex(d.in.Policy.Metrics, c.Metric) < 0 { // asked for, or not the policy's
				out = append(out, *c)
			}
		}
		covered := true
		for i := 0; i < len(ms) && covered; i++ {
			covered = slices.ContainsFunc(out, func(c analysis.Check) bool { return c.Metric == ms[i].Name })
		}
		if covered {
			return out, true
		}
	}
	// A copy: ms may be the policy's own (see comparisons).
	d.needChecks, d.measure = true, slices.Clone(ms)
	return nil, false
}

// observeAll takes a look's comparison checks into evidence and judges
// them, in place (checks are checksFor's, the decision's own); other
// checks pass through unchanged. It returns every check, and the
// comparisons that showed the canary worse.
func (d *decider) observeAll(checks []analysis.Check) (out, failed []analysis.Check) {
	comparisons := d.comparisons()
	if len(comparisons) == 0 {
		return checks, nil
	}
	t := d.now()
	d.st.LastLookAt = &t
	for i := range checks {
		if m := metricIndex(comparisons, checks[i].Metric); m >= 0 {
			checks[i] = d.observe(checks[i], &comparisons[m])
			if checks[i].Outcome == analysis.Fail {
				failed = append(failed, checks[i])
			}
		}
	}
	return checks, failed
}

// metricIndex is the index of the metric named name in ms, -1 if none.
func metricIndex(ms []analysis.Metric, name string) int {
	for i := range ms {
		if ms[i].Name == name {
			return i
		}
	}
	return -1
}

func metricNamed(ms []analysis.Metric, name string) (analysis.Metric, bool) {
	if i := metricIndex(ms, name); i >= 0 {
		return ms[i], true
	}
	return analysis.Metric{}, false
}

// evidence returns the status's evidence for a comparison, nil if none.
func (d *decider) evidence(metric string) *v1alpha1.Evidence {
	for i := range d.st.Evidence {
		if d.st.Evidence[i].Metric == metric {
			return &d.st.Evidence[i]
		}
	}
	return nil
}

// ComparisonAlpha is the level each comparison shows the canary worse
// at: the policy's alpha shared among its k comparisons, alpha/k
// (Bonferroni, see PromotionLevel). Its evidence rolls the canary back
// once it reaches 1/ComparisonAlpha. Zero without comparisons.
func (p *Policy) ComparisonAlpha() float64 {
	k := len(p.Comparisons())
	if k == 0 {
		return 0
	}
	return p.Alpha / float64(k)
}

// observe takes one comparison's reading into its evidence and judges it.
func (d *decider) observe(c analysis.Check, m *analysis.Metric) analysis.Check {
	alpha := d.in.Policy.Alpha / float64(len(d.comparisons())) // ComparisonAlpha
	if c.Outcome == analysis.Error || c.Reading == nil {
		if c.Outcome == "" {
			c.Outcome, c.Message = analysis.Error, m.Name+": no counters were read"
		}
		return c
	}
	r := *c.Reading
	ev := d.evidence(m.Name)
	first := ev == nil
	if first {
		t := d.now()
		d.st.Evidence = append(d.st.Evidence, v1alpha1.Evidence{Metric: m.Name, Since: &t})
		ev = &d.st.Evidence[len(d.st.Evidence)-1]
	}
	look := sequential.Look{
		CanaryRequests: r.Canary.Requests - ev.Last.Canary.Requests, CanaryBad: r.Canary.Bad - ev.Last.Canary.Bad,
		StableRequests: r.Stable.Requests - ev.Last.Stable.Requests, StableBad: r.Stable.Bad - ev.Last.Stable.Bad,
	}
	switch err := look.Check(); {
	case first:
		// The counters from here on are this revision's: a baseline,
		// from which the next look counts.
		ev.Last = r
		c.Outcome, c.Message = analysis.NotEnoughData, fmt.Sprintf("%s: counters read; the evidence counts from the next look", m.Name)
		return c
	case err != nil:
		// A counter that goes down is a restart (or a broken series):
		// nothing is learnt from this look, and the next one counts from
		// here. What was learnt before stays.
		ev.Last = r
		c.Outcome, c.Message = analysis.Error, fmt.Sprintf("%s: %v since the last look: measuring again from these counters; the evidence so far is kept", m.Name, err)
		return c
	default:
		before := sequential.Look{CanaryRequests: ev.Canary.Requests, CanaryBad: ev.Canary.Bad, StableRequests: ev.Stable.Requests, StableBad: ev.Stable.Bad}
		ev.NoWorse.Observe(look, before, d.st.Step, m.Compare.MaxIncrease, m.Compare.MaxRatio)
		if err := ev.Worse.Observe(look, d.st.Step); err != nil {
			ev.Worse = sequential.Worse{} // another grid: start over rather than mix
			c.Outcome, c.Message = analysis.Error, fmt.Sprintf("%s: %v: evidence restarted", m.Name, err)
			return c
		}
		ev.Canary.Requests += look.CanaryRequests
		ev.Canary.Bad += look.CanaryBad
		ev.Stable.Requests += look.StableRequests
		ev.Stable.Bad += look.StableBad
		ev.Last = r
		ev.Looks++
	}
	j := d.judgeEvidence(ev, m)
	// The check's value and what it compared, in one allocation.
	known := &struct {
		rate     float64
		compared analysis.Compared
	}{rate: ev.Canary.Rate(), compared: analysis.Compared{
		Canary: j.canary, Stable: j.stable, MaxIncrease: m.Compare.MaxIncrease, MaxRatio: m.Compare.MaxRatio,
		Evidence: j.evidence, RollbackAt: 1 / alpha, Confidence: 1 - alpha, Looks: ev.Looks,
		NoWorse: j.noWorse, PromoteAt: 1 / PromotionLevel, Against: d.against(),
	}}
	c.Value, c.Samples, c.Compared = &known.rate, int64(ev.Canary.Requests), &known.compared
	c.Outcome, c.Message = j.outcome, j.message
	return c
}

// judgement is what a comparison's evidence says: its outcome and message,
// and what is known of each side at the level that rolls back.
type judgement struct {
	outcome analysis.Outcome
	message string
	// name is the comparison's, which heads the message.
	name           string
	canary, stable analysis.Side
	// evidence is the Worse e-value, noWorse the Promotion one.
	evidence, noWorse float64
}

// judgementKey is everything a judgement reads but the comparison's name,
// as bits: the margin, the level, the prior, both sides' counts, and the
// evidence either way.
type judgementKey [13]uint64

// judgeEvidence judges a comparison's evidence, once observed. A decision's
// comparisons often read the same (a canary's latency comparisons count
// the same requests, none slow): a judgement that reads what the one
// before it in the decision read is that one's, renamed.
func (d *decider) judgeEvidence(ev *v1alpha1.Evidence, m *analysis.Metric) judgement {
	alpha := d.in.Policy.Alpha / float64(len(d.comparisons())) // ComparisonAlpha
	margin, ratio := m.Compare.MaxIncrease, m.Compare.MaxRatio
	worse := ev.Worse.LogE() // once: Shown and E are both of it
	prior := sequential.DefaultPrior
	k := judgementKey{}
	for i, v := range [...]float64{margin, ratio, alpha, prior.A, prior.B, ev.Canary.Requests, ev.Canary.Bad, ev.Stable.Requests, ev.Stable.Bad,
		worse, ev.NoWorse.LogE, ev.NoWorse.Margin, ev.NoWorse.Ratio} {
		k[i] = math.Float64bits(v)
	}
	if d.judged.message != "" && d.judgedKey == k {
		j := d.judged
		if j.name != m.Name {
			j.name, j.message = m.Name, m.Name+j.message[len(j.name):]
		}
		return j
	}
	side := func(c sequential.Counts) analysis.Side {
		lo, hi := sequential.Bounds(c, alpha, prior)
		return analysis.Side{Requests: c.Requests, Bad: c.Bad, Rate: c.Rate(), Low: lo, High: hi}
	}
	j := judgement{name: m.Name, canary: side(ev.Canary), stable: side(ev.Stable), evidence: math.Exp(worse), noWorse: math.Exp(ev.NoWorse.LogE)}
	known := analysis.Compared{
		Canary: j.canary, Stable: j.stable, MaxIncrease: margin, MaxRatio: ratio,
		Evidence: j.evidence, RollbackAt: 1 / alpha, Confidence: 1 - alpha, NoWorse: j.noWorse, PromoteAt: 1 / PromotionLevel,
		Against: d.against(),
	}
	// The message is written into a buffer on the stack, and copied once.
	var buf [512]byte
	b := append(buf[:0], m.Name...)
	switch {
	case ev.Canary.Requests == 0:
		// Nothing is known of a canary that has served nothing: no step
		// moves on for it.
		j.outcome = analysis.NotEnoughData
		b = append(b, ": the canary has served no request since the first look"...)
	case worse >= math.Log(1/alpha): // ev.Worse.Shown(alpha)
		j.outcome = analysis.Fail
		b = append(b, " worse: "...)
		b = appendExplain(b, &known)
	case ev.NoWorse.Shown(PromotionLevel):
		j.outcome = analysis.Pass
		b = append(b, " no worse than "...)
		b = append(b, known.AgainstName()...)
		b = append(b, ' ')
		b = analysis.AppendMargin(b, margin, ratio)
		b = append(b, ": "...)
		b = appendExplain(b, &known)
	default:
		j.outcome = analysis.Inconclusive
		b = append(b, ": cannot tell yet: "...)
		b = append(appendExplain(b, &known), "; "...)
		b = appendNeeded(b, ev) // of ev, Needed reads the counts and NoWorse's LogE, Margin and Ratio
	}
	j.message = string(b)
	d.judged, d.judgedKey = j, k
	return j
}

// explain writes a comparison's knowledge for people: "canary 7.4% [5.1%,
// 10.3%] vs stable 0.5% [0.4%, 0.6%], 540 canary requests, margin +1 pt,
// evidence 312 (rolled back at 100, alpha 0.01), no worse 0.02 (promoted
// at 20)".
func explain(c *analysis.Compared) string { return string(appendExplain(nil, c)) }

// appendExplain appends explain(c) to b. It is written out with strconv
// rather than fmt (the same text: %.0f is AppendFloat's 'f' at 0, %.3g its
// 'g' at 3) because it is written at every look of every comparison.
func appendExplain(b []byte, c *analysis.Compared) []byte {
	b = append(b, "canary "...)
	b = analysis.AppendPercent(b, c.Canary.Rate)
	b = append(b, " ["...)
	b = analysis.AppendPercent(b, c.Canary.Low)
	b = append(b, ", "...)
	b = analysis.AppendPercent(b, c.Canary.High)
	b = append(b, "] vs "...)
	b = append(b, c.AgainstName()...)
	b = append(b, ' ')
	b = analysis.AppendPercent(b, c.Stable.Rate)
	b = append(b, " ["...)
	b = analysis.AppendPercent(b, c.Stable.Low)
	b = append(b, ", "...)
	b = analysis.AppendPercent(b, c.Stable.High)
	b = append(b, "], "...)
	b = strconv.AppendFloat(b, c.Canary.Requests, 'f', 0, 64)
	b = append(b, " canary requests, margin "...)
	b = analysis.AppendMargin(b, c.MaxIncrease, c.MaxRatio)
	b = append(b, ", evidence "...)
	b = strconv.AppendFloat(b, c.Evidence, 'g', 3, 64)
	b = append(b, " (rolled back at "...)
	b = strconv.AppendFloat(b, c.RollbackAt, 'g', 3, 64)
	b = append(b, ", alpha "...)
	b = strconv.AppendFloat(b, 1-c.Confidence, 'g', 2, 64)
	b = append(b, "), no worse "...)
	b = strconv.AppendFloat(b, c.NoWorse, 'g', 3, 64)
	b = append(b, " (promoted at "...)
	b = strconv.AppendFloat(b, c.PromoteAt, 'g', 3, 64)
	return append(b, ')')
}

// appendNeeded appends how far a comparison is from showing the canary no
// worse: "about 300 more canary requests to show it no worse, at the rates
// so far", or that at those rates it would not be.
func appendNeeded(b []byte, ev *v1alpha1.Evidence) []byte {
	total := sequential.Look{CanaryRequests: ev.Canary.Requests, CanaryBad: ev.Canary.Bad, StableRequests: ev.Stable.Requests, StableBad: ev.Stable.Bad}
	n, ok := ev.NoWorse.Needed(total, PromotionLevel)
	if !ok {
		return append(b, "at the rates so far it would not be shown no worse: it may be worse than its margin, or stable has too little to compare with"...)
	}
	b = append(b, "about "...)
	b = strconv.AppendFloat(b, n, 'f', 0, 64)
	return append(b, " more canary requests to show it no worse, at the rates so far"...)
}

// pct writes a rate as a percentage: "7.4%", "0.52%", "100%".
func pct(r float64) string { return analysis.FormatPercent(r) }

// describeComparisons joins comparison checks' messages.
func describeComparisons(checks []analysis.Check) string {
	return joinComparisons(nil, checks, "")
}

// describeComparisonsAt is where + ": " + describeComparisons(checks),
// written at once: it is every look's message.
func describeComparisonsAt(where string, checks []analysis.Check) string {
	return joinComparisons([]string{where, ": "}, checks, "")
}

// joinComparisons writes head, then checks' messages joined, then tail.
func joinComparisons(head []string, checks []analysis.Check, tail string) string {
	n := len(tail)
	for _, h := range head {
		n += len(h)
	}
	for i := range checks {
		n += len(checks[i].Message) + len("; ")
	}
	var b strings.Builder
	b.Grow(n)
	for _, h := range head {
		b.WriteString(h)
	}
	first := true
	for i := range checks {
		if m := checks[i].Message; m != "" {
			if !first {
				b.WriteString("; ")
			}
			b.WriteString(m)
			first = false
		}
	}
	b.WriteString(tail)
	return b.String()
}

// anyPending reports whether a comparison has not shown the canary no
// worse (comparisonsPending is not empty).
func (d *decider) anyPending(checks []analysis.Check) bool {
	for i := range checks {
		if checks[i].Outcome != analysis.Pass && metricIndex(d.comparisons(), checks[i].Metric) >= 0 {
			return true
		}
	}
	return false
}

// comparisonsPending are the comparisons that have not shown the canary no
// worse: a promotion waits for them.
func (d *decider) comparisonsPending(checks []analysis.Check) []analysis.Check {
	out := make([]analysis.Check, 0, len(checks))
	for _, c := range checks {
		if metricIndex(d.comparisons(), c.Metric) >= 0 && c.Outcome != analysis.Pass {
			out = append(out, c)
		}
	}
	return out
}

// promoteEarly moves on from a look or round once every comparison shows
// the canary no worse and the threshold checks passed (in this round, or
// there are none): at the last step, once it has served its interval (its
// MinStepDuration with EarlyPromotion), which promotes; before it, only
// with EarlyPromotion, after MinStepDuration, skipping the remaining steps.
// The confirm-promotion gate, if any, must be open. It reports whether the
// decision is complete.
func (d *decider) promoteEarly(checks []analysis.Check, thresholdsPassed bool) bool {
	p := d.in.Policy
	if d.drifted {
		return false // nothing moves on while the routing is not as decided
	}
	if len(d.comparisons()) == 0 || !thresholdsPassed && len(d.comparisons()) != len(p.Metrics) || d.anyPending(checks) {
		return false
	}
	last := int(d.st.Step)+1 >= len(d.st.Steps)
	least := p.Interval
	if p.EarlyPromotion {
		least = p.MinStepDuration
	}
	if c := CohortOf(&d.st); d.previewing() && c != nil {
		least = max(least, c.MinDuration.Duration) // the preview's pre-promotion analysis
	}
	if !last && !p.EarlyPromotion || d.st.StepStartedAt == nil || d.in.Now.Sub(d.st.StepStartedAt.Time) < least {
		return false
	}
	if !d.flagsAllowMove() {
		return false
	}
	open, decided := d.gate(webhooks.ConfirmPromotion)
	if decided || !open {
		return decided
	}
	why := fmt.Sprintf("%s: every comparison shows the canary no worse: %s", d.where(), describeComparisons(checks))
	if d.previewing() {
		// Blue/green: the switch, never past the analysis after it.
		d.advance(why, v1alpha1.VerdictAdvance, checks)
		return true
	}
	if !last {
		why += "; promoting early"
	}
	d.startPromotion(why, checks)
	return true
}

// deadline acts when a revision has gone without a verdict for the
// policy's analysis deadline (every policy file sets one; zero, in a
// policy built in code, is none). It reports whether the decision is
// complete.
func (d *decider) deadline() bool {
	p := d.in.Policy
	from := d.st.RevisionStartedAt
	if d.switched() {
		// The switch was a verdict on the preview: after it, the wait for
		// one on the new revision serving everyone counts from the switch.
		from = d.st.StepStartedAt
	}
	if p.AnalysisDeadline <= 0 || from == nil || d.st.StepPassed || d.in.Now.Before(from.Add(p.AnalysisDeadline)) {
		return false
	}
	why := fmt.Sprintf("no verdict within the analysis deadline (%s)", p.AnalysisDeadline)
	if m := d.st.Message; m != "" {
		why += ": " + m
	}
	switch p.OnInsufficientEvidence {
	case OnInsufficientRollback:
		d.rollback(v1alpha1.VerdictRollback, why+"; the policy rolls back", nil)
		return true
	case OnInsufficientPromote:
		if d.previewing() {
			// Blue/green: the switch, judged after it as any switch is.
			d.advance(why+"; the policy promotes: switching", v1alpha1.VerdictAdvance, nil)
			return true
		}
		d.startPromotion(why+"; the policy promotes", nil)
		return true
	}
	if d.st.Hold == nil || d.st.Hold.Reason != v1alpha1.HoldInsufficientEvidence {
		d.hold(v1alpha1.HoldInsufficientEvidence, why+"; holding until a person decides or the evidence does")
	}
	return false
}

// against names what the comparisons compare the canary with, as
// analysis.Compared.Against: "baseline" for a fresh baseline, "" for
// stable.
func (d *decider) against() string {
	if d.st.Baseline == BaselineFresh {
		return "baseline"
	}
	if d.onPrevious() {
		return "previous"
	}
	return ""
}
