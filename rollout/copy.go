package rollout

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// copyChecks copies checks the decision takes from its input into the
// status or a notification, so that a decision never shares memory with
// the status it was given. (Slices of plain values are copied with
// slices.Clone, a load result with its generated DeepCopy.)
func copyChecks(in []analysis.Check) []analysis.Check {
	if in == nil {
		return nil
	}
	out := make([]analysis.Check, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

// statusForDecision copies the input status for the decision to change,
// sharing no memory that Decide writes to: deeply, but for the decision
// log and the outbox's messages. Decide only appends to the log, and
// relabels or annotates only the records it appended; the copy's log is
// clipped to its length, so that its first append moves it to an array of
// its own. Until then the copy's log shares the input's records, which
// neither side changes: the log is most of a status, and copying it at
// every look was most of what a decision cost. The outbox's entries are
// copied, but not their messages (Notification, Payload): an entry's
// message is written once, in the decision that queued it, and after that
// only the entry's delivery state changes.
//
// The conditions and both revisions' images are shared too (clipped):
// images are only ever replaced whole, and conditions sets the conditions
// in a copy of their own, only when they change.
//
// The comparisons' evidence and the status's instants are copied deeply,
// as DeepCopy would, but each kind into one allocation (a decision copies
// its status at every look, and the evidence's pieces were most of that
// copy's allocations).
func statusForDecision(in *v1alpha1.FlightStatus) v1alpha1.FlightStatus {
	rest := *in
	rest.Decisions, rest.Outbox, rest.Evidence = nil, nil, nil
	rest.Conditions, rest.StableImages, rest.CanaryImages = nil, nil, nil
	for _, t := range instants(&rest) {
		*t = nil
	}
	var st v1alpha1.FlightStatus
	rest.DeepCopyInto(&st)
	st.Decisions = slices.Clip(in.Decisions)
	st.Conditions = slices.Clip(in.Conditions)
	st.StableImages, st.CanaryImages = slices.Clip(in.StableImages), slices.Clip(in.CanaryImages)
	st.Outbox = slices.Clone(in.Outbox)
	st.Evidence = copyEvidence(in.Evidence)
	from, to := instants(in), instants(&st)
	n := 0
	for _, t := range from {
		if *t != nil {
			n++
		}
	}
	times := make([]metav1.Time, 0, n)
	for i, t := range from {
		if *t != nil {
			times = append(times, **t) // metav1.Time's DeepCopyInto
			*to[i] = &times[len(times)-1]
		}
	}
	return st
}

// instants are the status's own instants (those of its parts, such as
// Hold.Since, are copied with them).
func instants(st *v1alpha1.FlightStatus) [7]**metav1.Time {
	return [...]**metav1.Time{&st.RevisionStartedAt, &st.StepStartedAt, &st.LastAnalysisAt, &st.CanaryTrafficEndedAt, &st.LastLookAt, &st.StageStartedAt, &st.LastTransitionTime}
}

// copyEvidence copies the comparisons' evidence deeply, as DeepCopy does,
// into three allocations: the entries, their ratios' log likelihoods, and
// their pending and before looks. (evidenceShape, a test, fails when a
// field this copy does not know of is added to them.)
func copyEvidence(in []v1alpha1.Evidence) []v1alpha1.Evidence {
	if in == nil {
		return nil
	}
	out := make([]v1alpha1.Evidence, len(in))
	floats, looks := 0, 0
	for i := range in {
		floats += len(in[i].Worse.LogLR)
		for _, l := range [...]*sequential.Look{in[i].Worse.Pending, in[i].NoWorse.Pending, in[i].NoWorse.Before} {
			if l != nil {
				looks++
			}
		}
	}
	logLR := make([]float64, 0, floats)
	pending := make([]sequential.Look, 0, looks)
	look := func(l *sequential.Look) *sequential.Look {
		if l == nil {
			return nil
		}
		pending = append(pending, *l)
		return &pending[len(pending)-1]
	}
	for i := range in {
		out[i] = in[i]
		w := &out[i].Worse
		if w.LogLR != nil {
			n := len(logLR)
			logLR = append(logLR, w.LogLR...)
			w.LogLR = logLR[n:len(logLR):len(logLR)]
		}
		w.Pending = look(w.Pending)
		e := &out[i].NoWorse
		e.Pending, e.Before = look(e.Pending), look(e.Before)
		if in[i].Since != nil {
			out[i].Since = in[i].Since.DeepCopy()
		}
	}
	return out
}
