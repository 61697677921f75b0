package rollout

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
)

// DeepCopy returns a copy of the status that shares no memory with it, so
// that Decide never mutates its input (which may come from an informer's
// cache). Written by hand while the status is a plain Go type; the test
// fills every field and checks independence.
func (s *FlightStatus) DeepCopy() *FlightStatus {
	if s == nil {
		return nil
	}
	out := *s
	out.Steps = append([]int32(nil), s.Steps...)
	if s.Steps == nil {
		out.Steps = nil
	}
	out.RevisionStartedAt = s.RevisionStartedAt.DeepCopy()
	out.StepStartedAt = s.StepStartedAt.DeepCopy()
	out.LastAnalysisAt = s.LastAnalysisAt.DeepCopy()
	out.StageStartedAt = s.StageStartedAt.DeepCopy()
	if s.Hold != nil {
		h := *s.Hold
		out.Hold = &h
	}
	if s.LastAction != nil {
		a := *s.LastAction
		out.LastAction = &a
	}
	if s.Decisions != nil {
		out.Decisions = make([]DecisionRecord, len(s.Decisions))
		for i, r := range s.Decisions {
			out.Decisions[i] = r
			if r.Checks != nil {
				out.Decisions[i].Checks = make([]analysis.Check, len(r.Checks))
				for j, c := range r.Checks {
					if c.Value != nil {
						v := *c.Value
						c.Value = &v
					}
					out.Decisions[i].Checks[j] = c
				}
			}
		}
	}
	if s.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(s.Conditions))
		for i := range s.Conditions {
			s.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
	return &out
}
