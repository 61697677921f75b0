package rollout

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
)

// The watch after a promotion (policy postPromotion). A regression that
// shows only once a revision serves everyone (a cache that fills, a queue
// that grows, a nightly job) is not caught by the rollout. With a watch:
//
//   - when the promotion starts, fledge starts the previous revision's pods
//     beside it ("<name>-previous": the template of the Deployment's
//     ReplicaSet of that revision, at stable's size), so that they are
//     ready before anyone needs them;
//   - for the watch's duration, the promoted revision, serving everyone, is
//     judged against the previous revision's figures (each comparison's
//     stable side over the rollout) and the policy's threshold checks;
//   - on a regression, all traffic goes to the previous revision's pods at
//     once, and fledge says so loudly (Flight, Event, Slack, hooks, API).
//     The Deployment's template is not fledge's to write (GitOps owns it):
//     it keeps running the regressed revision, without traffic, until a
//     person or pipeline reverts it (fledge then rolls the Deployment back
//     and returns the traffic to it) or applies a fix (canaried against the
//     previous revision's pods, as against stable);
//   - at the end of a clean watch the previous revision's pods are removed.

// watches reports whether the policy watches after a promotion.
func (p *Policy) watches() bool { return p.PostPromotion > 0 }

// watchState is the watch's state, "" without one.
func (d *decider) watchState() v1alpha1.WatchState {
	if d.st.Watch == nil {
		return ""
	}
	return d.st.Watch.State
}

// onPrevious reports whether the previous revision's pods serve in stable's
// place: a watch reverted (or restoring), and its pods ready, or routed to
// already and any of them still available (one pod restarting does not
// send users back to the regressed revision).
func (d *decider) onPrevious() bool {
	if d.configPinned() {
		return true // stable's share on stable's pods pinned to its config
	}
	s := d.watchState()
	if s != v1alpha1.WatchReverted && s != v1alpha1.WatchRestoring {
		return false
	}
	return d.in.PreviousReady || d.st.Watch.Routed && d.in.PreviousAvailable > 0
}

// previousFlip reports whether the routing read back is want but for
// stable's share being on the other side of a revert: on the Deployment's
// pods where want has it on the previous revision's, or the reverse.
func (d *decider) previousFlip(want traffic.Weights) bool {
	s := d.watchState()
	if s != v1alpha1.WatchReverted && s != v1alpha1.WatchRestoring && (d.st.Config == nil || !d.st.Config.Pinned) {
		return false
	}
	other := want
	switch {
	case want.Baseline > 0 && want.Stable == 0:
		other.Stable, other.Baseline = want.Baseline, 0
	case want.Stable > 0 && want.Baseline == 0:
		other.Stable, other.Baseline = 0, want.Stable
	default:
		return false
	}
	got := d.in.Weights
	got.Mirror, got.MirrorCompared, other.Mirror, other.MirrorCompared = 0, false, 0, false
	return got == other
}

// restName names where a Flight at rest sends its traffic.
func (d *decider) restName() string {
	if d.configPinned() {
		return fmt.Sprintf("stable's pods on stable's config (%s%s)", d.in.Name, previousSuffix)
	}
	if d.onPrevious() {
		return fmt.Sprintf("%s's pods (%s%s)", d.st.Watch.Previous, d.in.Name, previousSuffix)
	}
	return "stable"
}

// previousSuffix names the previous revision's Deployment beside the app's
// (the engine's PreviousSuffix).
const previousSuffix = "-previous"

// rest is the routing of a Flight at rest: all traffic on stable, or on the
// previous revision's pods while a watch's revert stands.
func (d *decider) rest() traffic.Weights {
	if d.onPrevious() {
		return traffic.Weights{Baseline: 100}
	}
	return plainStable
}

// startWatch, at a promotion's start, starts the previous revision's pods
// for a watch (unless a revert in place keeps them already).
func (d *decider) startWatch() {
	if !d.in.Policy.watches() || d.watchState() == v1alpha1.WatchReverted {
		return
	}
	// Sized for all of the traffic: stable's size, or, with an
	// autoscaler, the canary's, which podsFor sized for all of it.
	n := d.in.StableReplicas
	if d.autoscaled() {
		n = max(n, d.in.CanaryReplicas)
	}
	d.st.Watch = &v1alpha1.Watch{Revision: d.st.CanaryRevision, Previous: d.st.StableRevision, State: v1alpha1.WatchPreparing, Replicas: n,
		PreviousImages: slices.Clone(d.st.StableImages)}
}

// keepPrevious asks for the previous revision's pods while a watch wants
// them and they are not there, not ready, too few, or of another revision
// (deleted or scaled by someone, say): at every decision, whatever the
// phase (a fix canaried after a revert included).
func (d *decider) keepPrevious() {
	w := d.st.Watch
	if w == nil || d.in.OptedOut {
		return
	}
	switch w.State {
	case v1alpha1.WatchPreparing, v1alpha1.WatchWatching, v1alpha1.WatchReverted, v1alpha1.WatchRestoring:
	default:
		return
	}
	if (w.State == v1alpha1.WatchReverted || w.State == v1alpha1.WatchRestoring) && d.in.PreviousReady && !w.Routed {
		w.Routed = true // the routing goes to them from now on (rest, routing)
	}
	if d.in.PreviousExists && d.in.PreviousReady && d.in.PreviousRevision == w.Previous && d.in.PreviousReplicas >= w.Replicas {
		return
	}
	previous, _ := ContentOf(&d.st, w.Previous)
	d.do(EnsurePrevious{Revision: w.Previous, Replicas: w.Replicas, Config: previous})
}

// stableUpdated, once the Deployment runs the promoted revision, prepares
// the watch that follows: a revert in place hands its previous revision's
// pods to the new watch (they still serve what users had before), or ends.
func (d *decider) stableUpdated() {
	w := d.st.Watch
	if w == nil || w.State != v1alpha1.WatchReverted {
		return
	}
	if d.in.Policy.watches() {
		d.st.Watch = &v1alpha1.Watch{Revision: d.st.CanaryRevision, Previous: w.Previous, State: v1alpha1.WatchPreparing, Replicas: w.Replicas,
			PreviousImages: slices.Clone(w.PreviousImages)}
		return
	}
	w.State, w.Routed = v1alpha1.WatchEnded, false
	w.Message = fmt.Sprintf("%s was promoted in place of %s: %s's pods are removed", d.st.CanaryRevision, w.Revision, w.Previous)
}

// beginWatch, once a promotion is done, starts watching the promoted
// revision, with each comparison's figures of the previous revision.
func (d *decider) beginWatch() {
	w := d.st.Watch
	if w == nil || w.State != v1alpha1.WatchPreparing {
		return
	}
	now := d.now()
	until := metav1.NewTime(now.Add(d.in.Policy.PostPromotion))
	w.State, w.Since, w.Until = v1alpha1.WatchWatching, &now, &until
	w.Window, w.WindowStart = 1, &now
	w.Figures = nil
	for _, ev := range d.st.Evidence {
		if ev.Stable.Requests > 0 {
			w.Figures = append(w.Figures, v1alpha1.WatchFigure{Metric: ev.Metric, Before: ev.Stable})
		}
	}
	w.Message = fmt.Sprintf("watching %s until %s against %s's figures%s; %s's pods wait, ready, to take all traffic back",
		w.Revision, until.UTC().Format(time.TimeOnly), w.Previous, d.thresholdNote(), w.Previous)
	d.st.Message += "; " + w.Message
	d.after(time.Second)
}

// thresholdNote names the threshold checks a watch judges too.
func (d *decider) thresholdNote() string {
	var names []string
	for _, m := range d.in.Policy.Metrics {
		if !m.IsComparison() {
			names = append(names, m.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " and its bounds (" + strings.Join(names, ", ") + ")"
}

// watchDecides decides for a Flight whose watch is under way or reverted.
// It reports whether the decision is complete; otherwise the Flight is
// decided as one at rest (a new revision is canaried).
func (d *decider) watchDecides() bool {
	w := d.st.Watch
	if w == nil {
		return false
	}
	switch w.State {
	case v1alpha1.WatchWatching:
		if d.in.DesiredRevision != w.Revision {
			d.endWatch(fmt.Sprintf("revision %s arrived: it is canaried against %s, and %s's pods are removed", d.in.DesiredRevision, w.Revision, w.Previous))
			return false
		}
		d.watch()
		return true
	case v1alpha1.WatchReverted:
		switch d.in.DesiredRevision {
		case w.Revision:
			d.stayReverted()
			return true
		case w.Previous:
			d.restore()
			return true
		}
		return false // a fix: canaried against the previous revision's pods
	case v1alpha1.WatchRestoring:
		d.restoring()
		return true
	}
	return false
}

// endWatch ends a watch early; its previous revision's pods go once no
// route reaches them (retirePrevious).
func (d *decider) endWatch(why string) {
	w := d.st.Watch
	w.State, w.Message = v1alpha1.WatchEnded, why
	d.record(v1alpha1.VerdictHold, "watch of "+w.Revision+" ended: "+why, nil)
}

// watch judges the promoted revision while it serves everyone: its
// comparisons' counters every look, its threshold checks every interval.
func (d *decider) watch() {
	w := d.st.Watch
	p := d.in.Policy
	now := d.in.Now
	d.settle()
	if !now.Before(w.Until.Time) {
		d.passWatch()
		return
	}
	lookAt := w.Since.Time
	if w.LastLookAt != nil {
		lookAt = w.LastLookAt.Add(p.LookInterval)
	}
	analyzeAt := w.Since.Add(p.Interval)
	if w.LastAnalysisAt != nil {
		analyzeAt = w.LastAnalysisAt.Add(p.Interval)
	}
	var ms []analysis.Metric
	look, analyze := !now.Before(lookAt), !now.Before(analyzeAt)
	for _, m := range p.Metrics {
		if m.IsComparison() && (look || analyze) || !m.IsComparison() && analyze {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		next := minTime(minTime(lookAt, analyzeAt), w.Until.Time)
		if !d.hasComparisons() {
			next = minTime(analyzeAt, w.Until.Time)
		}
		d.st.Message = w.Message
		d.after(max(next.Sub(now), time.Second))
		return
	}
	checks, ok := d.checksFor(ms)
	if !ok {
		return
	}
	t := d.now()
	if look || analyze {
		w.LastLookAt = &t
	}
	if analyze {
		w.LastAnalysisAt = &t
	}
	regressed, notes := d.judgeWatch(checks, analyze)
	if len(regressed) > 0 {
		d.revert(fmt.Sprintf("%s regressed after its promotion: %s", w.Revision, strings.Join(regressed, "; ")), checks)
		return
	}
	w.Message = fmt.Sprintf("watching %s until %s: %s", w.Revision, w.Until.UTC().Format(time.TimeOnly), strings.Join(notes, "; "))
	if !d.in.PreviousReady {
		w.Message += fmt.Sprintf("; %s's pods are not ready yet%s", w.Previous, trouble(d.in.PreviousTrouble))
	}
	d.st.Message = w.Message
	if analyze {
		analyzeAt = t.Add(p.Interval)
	}
	next := minTime(w.Until.Time, analyzeAt)
	if d.hasComparisons() {
		next = minTime(next, t.Add(p.LookInterval))
	}
	d.after(max(next.Sub(now), time.Second))
}

func trouble(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// hasComparisons reports whether the watch has any comparison figures.
func (d *decider) hasComparisons() bool { return len(d.st.Watch.Figures) > 0 }

// judgeWatch takes a watch's checks into its figures and judges them.
//
// A comparison regressed when the promoted revision's rate is above the
// previous revision's by more than the margin, with confidence: the lower
// bound of its confidence sequence above the upper bound of the previous
// revision's (a fixed sample) plus the margin. Two tests share the
// comparison's alpha (the policy's, split among its comparisons): one on
// the counts since the watch began (alpha/2), which finds a small
// regression that lasts, and one on each window's counts alone (one
// interval each; window i gets alpha/2 x 6/(pi^2 i^2), which sums to
// alpha/2 over all windows), which finds one that starts late, undiluted
// by the healthy time before it. Each test splits its share between the
// two bounds; a false alarm needs one bound wrong, so the chance of one is
// at most alpha over the whole watch, whenever and however often it looks
// (the bounds are confidence sequences: Howard et al. 2021).
//
// A threshold check counts its failures against the policy's
// failureLimit. It returns what regressed, and how each stands.
func (d *decider) judgeWatch(checks []analysis.Check, analyzed bool) (regressed, notes []string) {
	w := d.st.Watch
	p := d.in.Policy
	k := float64(max(len(w.Figures), 1))
	whole := p.Alpha / k / 2
	window := p.Alpha / k / 2 * 6 / (math.Pi * math.Pi * float64(max(w.Window, 1)*max(w.Window, 1)))
	for _, c := range checks {
		m, ok := metricNamed(p.Metrics, c.Metric)
		if !ok {
			continue
		}
		if !m.IsComparison() {
			switch c.Outcome {
			case analysis.Fail:
				w.FailedChecks++
				msg := fmt.Sprintf("%s (failed checks %d/%d)", c.Message, w.FailedChecks, p.FailureLimit)
				if int(w.FailedChecks) >= p.FailureLimit {
					regressed = append(regressed, msg)
				} else {
					notes = append(notes, msg)
				}
			case analysis.Pass:
				notes = append(notes, c.Message)
			default:
				notes = append(notes, fmt.Sprintf("%s cannot judge: %s", c.Metric, c.Message))
			}
			continue
		}
		i := slices.IndexFunc(w.Figures, func(f v1alpha1.WatchFigure) bool { return f.Metric == c.Metric })
		if i < 0 {
			continue // no figures of the previous revision to compare with
		}
		f := &w.Figures[i]
		if c.Reading == nil || c.Outcome == analysis.Error {
			notes = append(notes, fmt.Sprintf("%s: no counters read (%s)", c.Metric, c.Message))
			continue
		}
		now := c.Reading.Stable
		switch {
		case f.Last == nil:
			f.Last = &now
			notes = append(notes, c.Metric+": counters read; counting from here")
			continue
		case now.Requests < f.Last.Requests || now.Bad < f.Last.Bad:
			f.Last = &now // a restart: count from here, keeping what was counted
			notes = append(notes, c.Metric+": counters went down (a restart): counting from here")
			continue
		}
		delta := sequential.Counts{Requests: now.Requests - f.Last.Requests, Bad: now.Bad - f.Last.Bad}
		f.After.Requests += delta.Requests
		f.After.Bad += delta.Bad
		f.Recent.Requests += delta.Requests
		f.Recent.Bad += delta.Bad
		f.Last = &now
		if msg, worse := d.regressed(m, f.After, f.Before, whole, "since the promotion"); worse {
			regressed = append(regressed, msg)
		} else if msg2, worse := d.regressed(m, f.Recent, f.Before, window, fmt.Sprintf("in the last %s", d.in.Now.Sub(w.WindowStart.Time).Round(time.Second))); worse {
			regressed = append(regressed, msg2)
		} else {
			notes = append(notes, msg)
		}
	}
	if end := w.WindowStart.Add(p.Interval); !d.in.Now.Before(end) {
		// The window is over: the next one counts afresh.
		t := d.now()
		w.Window, w.WindowStart = w.Window+1, &t
		for i := range w.Figures {
			w.Figures[i].Recent = sequential.Counts{}
		}
	}
	return regressed, notes
}

// regressed judges one comparison's counts after the promotion against the
// previous revision's, at level alpha (split between the two bounds), and
// says how it stands.
func (d *decider) regressed(m analysis.Metric, after, before sequential.Counts, alpha float64, over string) (string, bool) {
	w := d.st.Watch
	lo, hi := sequential.Bounds(after, alpha/2, sequential.DefaultPrior)
	blo, bhi := sequential.Bounds(before, alpha/2, sequential.DefaultPrior)
	limit := bhi + m.Compare.MaxIncrease
	margin := fmt.Sprintf("margin +%s pt", trimFloat(100*m.Compare.MaxIncrease))
	if m.Compare.MaxRatio > 0 {
		limit = bhi * m.Compare.MaxRatio
		margin = fmt.Sprintf("margin x%s", trimFloat(m.Compare.MaxRatio))
	}
	msg := fmt.Sprintf("%s: %s %s [%s, %s] over %.0f requests %s vs %s %s [%s, %s] over %.0f before it, %s",
		m.Name, w.Revision, pct(after.Rate()), pct(lo), pct(hi), after.Requests, over,
		w.Previous, pct(before.Rate()), pct(blo), pct(bhi), before.Requests, margin)
	if after.Requests > 0 && lo > limit {
		return msg + fmt.Sprintf(" (worse at alpha %.2g)", alpha), true
	}
	return msg, false
}

// trimFloat prints v with at most 3 significant digits.
func trimFloat(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%.3g", v)
}

// passWatch ends a watch that found nothing: the previous revision's pods
// go.
func (d *decider) passWatch() {
	w := d.st.Watch
	w.State = v1alpha1.WatchPassed
	w.Message = fmt.Sprintf("the watch of %s ended without a regression (%s); %s's pods are removed", w.Revision, d.in.Policy.PostPromotion, w.Previous)
	d.st.Message = w.Message
	d.event(false, "WatchPassed", w.Message)
	d.record(v1alpha1.VerdictPromoted, w.Message, nil)
	d.after(time.Second)
}

// revert sends all traffic to the previous revision's pods and says so
// loudly. The Deployment keeps the regressed revision: its template is not
// fledge's to write.
func (d *decider) revert(why string, checks []analysis.Check) {
	w := d.st.Watch
	w.State, w.Message = v1alpha1.WatchReverted, why
	d.st.Phase = v1alpha1.PhaseRolledBack
	d.st.RejectedRevision = w.Revision
	msg := fmt.Sprintf("%s: all traffic is on %s's pods (%s-previous); the Deployment still runs %s without traffic: revert its template to %s (fledge then rolls it back and returns the traffic to it) or apply a fix (canaried against %s's pods)",
		why, w.Previous, d.in.Name, w.Revision, w.Previous, w.Previous)
	if !d.in.PreviousReady {
		msg = fmt.Sprintf("%s; %s's pods are not ready%s: the traffic stays on %s until they are", msg, w.Previous, trouble(d.in.PreviousTrouble), w.Revision)
	} else {
		w.Routed = true
		d.do(SetWeights{Weights: d.rest()})
	}
	d.st.Message = msg
	d.event(true, "Reverted", msg)
	d.record(v1alpha1.VerdictRollback, msg, checks)
	d.notifyReverted(msg, checks)
	d.tellHooks(webhooks.PostRollout, EventRolledBack, msg)
	d.after(time.Second)
}

// stayReverted keeps the traffic on the previous revision's pods while
// the Deployment's template is the regressed revision's.
func (d *decider) stayReverted() {
	w := d.st.Watch
	if d.in.PreviousReady && !w.Routed {
		w.Routed = true // settle routes to them now
	}
	d.settle()
	if d.onPrevious() {
		d.st.Hold = nil // reverted, and routed: nothing holds but the team's next template
		d.after(resync)
		return
	}
	// Nowhere better to send users: the traffic stays where it is, and
	// the hold says so until the previous pods come up (its Since kept,
	// so that how long is plain).
	msg := fmt.Sprintf("%s; %s's pods are not ready%s: the traffic stays on %s until they are", w.Message, w.Previous, trouble(d.in.PreviousTrouble), w.Revision)
	if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldCanaryNotReady && d.in.Now.Sub(h.Since.Time) >= d.in.Policy.ProgressDeadline {
		msg += fmt.Sprintf(", for longer than the progress deadline (%s): see why %s%s cannot run, or revert the template", d.in.Policy.ProgressDeadline, d.in.Name, previousSuffix)
	}
	d.hold(v1alpha1.HoldCanaryNotReady, msg)
	d.st.Message = msg
	d.after(2 * time.Second)
}

// restore, once the template is back at the previous revision, lets the
// Deployment roll to it while the previous revision's pods serve.
func (d *decider) restore() {
	w := d.st.Watch
	t := d.now()
	d.st.StageStartedAt = &t
	w.State = v1alpha1.WatchRestoring
	w.Message = fmt.Sprintf("the template is back at %s: the Deployment rolls to it while %s's pods serve", w.Previous, w.Previous)
	d.st.Message = w.Message
	d.record(v1alpha1.VerdictRevert, w.Message, nil)
	d.event(false, "Restoring", w.Message)
	d.restoring()
}

// restoring follows the Deployment's roll back to the previous revision;
// once it is done, the traffic returns to it and the previous revision's
// pods go.
func (d *decider) restoring() {
	w := d.st.Watch
	if d.in.Weights != d.rest() {
		d.do(SetWeights{Weights: d.rest()})
	}
	if d.in.CanaryReplicas != 0 {
		d.do(ScaleCanaryDown{})
	}
	if d.in.DesiredRevision != w.Previous {
		// The template changed again: as reverted, from here.
		w.State = v1alpha1.WatchReverted
		d.st.StageStartedAt = nil
		if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldStableStalled {
			d.st.Hold = nil
		}
		d.do(SetStablePaused{Paused: true})
		d.after(time.Second)
		return
	}
	if d.in.DeploymentPaused {
		d.do(SetStablePaused{Paused: false})
	}
	if c := d.st.Config; c != nil && d.in.StalePods > 0 && c.SeenAt != nil && TemplateOf(d.in.DeploymentRevision) == TemplateOf(w.Previous) {
		// Its template is back, but pods made before the config was
		// reverted may read the regressed content: restarted first.
		d.do(RestartStalePods{Before: *c.SeenAt})
	}
	if d.in.DeploymentRevision != w.Previous || !d.in.DeploymentSettled || d.in.StalePods > 0 {
		d.st.Message = w.Message
		if s := d.st.StageStartedAt; s != nil && d.in.Now.Sub(s.Time) >= d.in.Policy.ProgressDeadline {
			d.hold(v1alpha1.HoldStableStalled, fmt.Sprintf("the Deployment has not finished rolling back to %s after %s; %s's copy serves meanwhile", w.Previous, d.in.Policy.ProgressDeadline, w.Previous))
		}
		d.after(2 * time.Second)
		return
	}
	d.st.StageStartedAt, d.st.Hold = nil, nil
	w.State, w.Routed = v1alpha1.WatchEnded, false
	w.Message = fmt.Sprintf("restored: the Deployment runs %s again and serves all traffic; %s's copy is removed", w.Previous, w.Previous)
	d.st.StableRevision = w.Previous
	d.st.StableImages = slices.Clone(d.in.StableImages)
	d.st.Message = w.Message
	d.settle()
	d.event(false, "Restored", w.Message)
	d.record(v1alpha1.VerdictRevert, w.Message, nil)
	d.after(time.Second)
}

// retirePrevious removes the previous revision's pods once no watch wants
// them and no route reaches them.
func (d *decider) retirePrevious() {
	if !d.in.PreviousExists || d.in.OptedOut {
		return
	}
	switch d.watchState() {
	case v1alpha1.WatchPreparing, v1alpha1.WatchWatching, v1alpha1.WatchReverted, v1alpha1.WatchRestoring:
		return
	}
	if c := d.st.Config; c != nil && c.Pinned {
		return // stable's pods on stable's config
	}
	if d.in.Weights.Baseline > 0 || d.in.RoutingError != "" {
		return
	}
	for _, a := range d.actions {
		if _, ok := a.(SetWeights); ok {
			return // the next look, once the routing reads back without them
		}
	}
	d.do(DeletePrevious{})
}
