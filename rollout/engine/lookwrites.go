package engine

import (
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// LookWriteEvery is how often, at most, a look that only added evidence
// is written (or every third look, if the policy looks more often than
// every 5 s).
const LookWriteEvery = 15 * time.Second

// evidenceOnly reports whether decision dec, taken on status was, only
// added a look to the comparisons' evidence (every one counted it, none
// is new) and changed nothing else but the look's time and messages, with
// nothing to do, less than every after the last look written:
// such a look need not be written. Its counts are not lost: the next look
// reads the counters again and counts from those last written, the looks
// in between as one (the evidence stays valid whatever the looks'
// schedule). Writing every look instead was a status write every few
// seconds per rollout in flight, most of fledge's load on the API server
// at scale.
func evidenceOnly(was *v1alpha1.FlightStatus, dec *rollout.Decision, now time.Time, every time.Duration) bool {
	if watchLookOnly(was, dec, now, every) {
		return true
	}
	st := &dec.Status
	if len(dec.Actions) > 0 || dec.Action != nil || was.LastLookAt == nil || st.LastLookAt == nil || now.Sub(was.LastLookAt.Time) >= every ||
		len(was.Evidence) == 0 || len(was.Evidence) != len(st.Evidence) {
		return false
	}
	for i := range st.Evidence {
		if st.Evidence[i].Metric != was.Evidence[i].Metric || st.Evidence[i].Looks != was.Evidence[i].Looks+1 {
			return false // a new comparison, or a look that did not count (an error, a counter reset)
		}
	}
	a, b := *was, *st
	for _, x := range []*v1alpha1.FlightStatus{&a, &b} {
		x.LastLookAt, x.Evidence, x.Message, x.Conditions = nil, nil, "", conditionStates(x.Conditions)
		if x.Hold != nil {
			h := *x.Hold
			h.Message = ""
			x.Hold = &h
		}
	}
	return equality.Semantic.DeepEqual(a, b)
}

// conditionStates are the conditions without their messages and times.
func conditionStates(cs []metav1.Condition) []metav1.Condition {
	out := make([]metav1.Condition, len(cs))
	for i, c := range cs {
		out[i] = metav1.Condition{Type: c.Type, Status: c.Status, Reason: c.Reason, ObservedGeneration: c.ObservedGeneration}
	}
	return out
}

// watchLookOnly reports whether decision dec, taken on status was, only
// added a look to a watch after a promotion (its counts, its window, its
// message), with nothing to do, less than every after the last watch look
// written: as evidenceOnly, such a look need not be written. The next
// look counts from the counters last written, the looks in between as
// one; a window that ended unwritten ends again at the next look; a
// threshold round, a failure or a verdict changes more, and is written.
func watchLookOnly(was *v1alpha1.FlightStatus, dec *rollout.Decision, now time.Time, every time.Duration) bool {
	st := &dec.Status
	w, v := was.Watch, st.Watch
	if len(dec.Actions) > 0 || dec.Action != nil || w == nil || v == nil || w.State != v1alpha1.WatchWatching || v.State != v1alpha1.WatchWatching ||
		w.LastLookAt == nil || v.LastLookAt == nil || now.Sub(w.LastLookAt.Time) >= every || len(w.Figures) != len(v.Figures) {
		return false
	}
	for i := range w.Figures {
		if w.Figures[i].Metric != v.Figures[i].Metric || w.Figures[i].Last == nil {
			return false // a figure's first counters are a baseline: written
		}
	}
	a, b := *was, *st
	wa, wb := *w, *v
	for _, x := range []*v1alpha1.Watch{&wa, &wb} {
		x.Figures, x.LastLookAt, x.Message, x.Window, x.WindowStart = nil, nil, "", 0, nil
	}
	a.Watch, b.Watch = &wa, &wb
	for _, x := range []*v1alpha1.FlightStatus{&a, &b} {
		x.Message, x.Conditions = "", conditionStates(x.Conditions)
	}
	return equality.Semantic.DeepEqual(a, b)
}
