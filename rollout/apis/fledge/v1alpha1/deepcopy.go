package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/webhooks"
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
			out.Decisions[i].Checks = dcChecks(r.Checks)
			out.Decisions[i].Flags = dcStrings(r.Flags)
		}
	}
	if s.Requests != nil {
		out.Requests = append([]RequestRecord(nil), s.Requests...)
	}
	if s.Cohorts != nil {
		out.Cohorts = append([]CohortStage(nil), s.Cohorts...)
	}
	if s.Flags != nil {
		out.Flags = append([]FlagStatus(nil), s.Flags...)
		for i := range out.Flags {
			out.Flags[i].WritingSince = s.Flags[i].WritingSince.DeepCopy()
		}
	}
	if s.Sticky != nil {
		st := *s.Sticky
		out.Sticky = &st
	}
	out.StableImages = dcImages(s.StableImages)
	out.CanaryImages = dcImages(s.CanaryImages)
	if s.Calls != nil {
		out.Calls = make([]CallRecord, len(s.Calls))
		for i, c := range s.Calls {
			c.Load = dcLoad(c.Load)
			c.Done = c.Done.DeepCopy()
			out.Calls[i] = c
		}
	}
	if s.Outbox != nil {
		out.Outbox = make([]Delivery, len(s.Outbox))
		for i, d := range s.Outbox {
			d.Done = d.Done.DeepCopy()
			if d.Notification != nil {
				n := *d.Notification
				n.FromImages, n.ToImages = dcStrings(n.FromImages), dcStrings(n.ToImages)
				n.Plan = dcInt32s(n.Plan)
				n.Checks = dcChecks(n.Checks)
				n.Flags = dcStrings(n.Flags)
				n.Cohorts = dcStrings(n.Cohorts)
				d.Notification = &n
			}
			if d.Payload != nil {
				d.Payload = dcPayload(d.Payload)
			}
			out.Outbox[i] = d
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

func dcChecks(in []analysis.Check) []analysis.Check {
	if in == nil {
		return nil
	}
	out := make([]analysis.Check, len(in))
	for i, c := range in {
		if c.Value != nil {
			v := *c.Value
			c.Value = &v
		}
		out[i] = c
	}
	return out
}

func dcStrings(in []string) []string {
	if in == nil {
		return nil
	}
	return append([]string(nil), in...)
}

func dcInt32s(in []int32) []int32 {
	if in == nil {
		return nil
	}
	return append([]int32(nil), in...)
}

func dcLoad(in *webhooks.LoadResult) *webhooks.LoadResult {
	if in == nil {
		return nil
	}
	out := *in
	out.Errors = dcStrings(in.Errors)
	return &out
}

func dcPayload(in *webhooks.Payload) *webhooks.Payload {
	out := *in
	out.Revision.Images = dcStrings(in.Revision.Images)
	out.Revision.From = dcStrings(in.Revision.From)
	out.Checks = dcChecks(in.Checks)
	if in.Metadata != nil {
		out.Metadata = make(map[string]string, len(in.Metadata))
		for k, v := range in.Metadata {
			out.Metadata[k] = v
		}
	}
	return &out
}

func dcImages(in []ContainerImage) []ContainerImage {
	if in == nil {
		return nil
	}
	return append([]ContainerImage(nil), in...)
}
