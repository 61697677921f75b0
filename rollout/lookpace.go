package rollout

import "time"

// lookDue is when the comparisons next read counters (zero without any).
func (d *decider) lookDue() time.Time {
	if len(d.comparisons()) == 0 {
		return time.Time{}
	}
	if d.st.LastLookAt == nil || d.st.StepStartedAt != nil && d.st.LastLookAt.Before(d.st.StepStartedAt) && len(d.st.Evidence) == 0 {
		return d.in.Now // the first look sets the baseline
	}
	return d.st.LastLookAt.Add(d.lookGap())
}

// quietLooks bounds how many LookIntervals apart a quiet canary's looks
// may be.
const quietLooks = 6

// quietRequests is how many canary requests a quiet canary's look is
// expected to read.
const quietRequests = 3

// lookGap is how long after a look the comparisons look again: every
// LookInterval, unless the canary is expected to serve fewer than
// quietRequests requests in that time (a quiet service at a low weight).
// Then it is the time the canary takes on average to serve quietRequests,
// at the rate both sides served since the first look and its weight now,
// up to quietLooks LookIntervals and the interval: a look that reads no
// new canary request adds next to nothing to a comparison, and costs its
// queries all the same. The evidence is valid whatever the looks' pace
// (it is an e-process); a verdict comes about quietRequests canary
// requests later at most. While a load-test hook generates load, the
// looks keep their pace, to see it.
func (d *decider) lookGap() time.Duration {
	base := d.in.Policy.LookInterval
	if len(d.st.Evidence) == 0 || d.st.LastLookAt == nil || d.st.CanaryWeight <= 0 || d.st.Step < 0 {
		return base
	}
	ev := &d.st.Evidence[0]
	if ev.Since == nil {
		return base
	}
	span := d.st.LastLookAt.Sub(ev.Since.Time).Seconds()
	if span < quietLooks*base.Seconds() {
		return base // too soon to know the rate
	}
	if load := d.loadOnDemand(); len(load) > 0 && d.hooksStarted(load, d.st.Step, d.st.Round) {
		return base
	}
	perSecond := (ev.Canary.Requests + ev.Stable.Requests) / span * float64(d.st.CanaryWeight) / 100
	if perSecond*base.Seconds() >= quietRequests {
		return base
	}
	gap := min(quietLooks*base, d.in.Policy.Interval) // the policy keeps LookInterval <= Interval
	if perSecond > 0 {
		gap = min(gap, time.Duration(quietRequests*float64(time.Second)/perSecond).Round(time.Second))
	}
	return max(gap, base)
}
