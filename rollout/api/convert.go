package api

import (
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// lazyFlight converts a Flight once, for every watcher that sends it. The
// result is shared: gRPC only reads messages it sends, and protobuf
// messages may be marshalled concurrently as long as nobody changes them.
type lazyFlight struct {
	once sync.Once
	in   *rollout.Flight
	out  *rolloutpb.Flight
}

func (l *lazyFlight) get() *rolloutpb.Flight {
	l.once.Do(func() { l.out = FlightToProto(l.in) })
	return l.out
}

// proto returns the event's Flight as the API sends it.
func (ev *FlightEvent) proto() *rolloutpb.Flight {
	if ev.converted != nil {
		return ev.converted.get()
	}
	return FlightToProto(ev.Flight)
}

// FlightToProto converts a Flight for the API. The decision log is left
// out but for its newest entry (Explain returns the whole log); hook calls
// and the outbox have no place in the API yet.
func FlightToProto(f *rollout.Flight) *rolloutpb.Flight {
	if f == nil {
		return nil
	}
	st := &f.Status
	out := &rolloutpb.Flight{
		Namespace:         f.Namespace,
		Name:              f.Name,
		Uid:               string(f.UID),
		ResourceVersion:   f.ResourceVersion,
		CreatedAt:         timestamp(&f.CreationTimestamp),
		Policy:            f.Spec.Policy,
		Host:              f.Spec.Host,
		StableRevision:    st.StableRevision,
		CanaryRevision:    st.CanaryRevision,
		RejectedRevision:  st.RejectedRevision,
		StableImages:      images(st.StableImages),
		CanaryImages:      images(st.CanaryImages),
		RevisionStartedAt: timestamp(st.RevisionStartedAt),
		Phase:             phaseToProto(st.Phase),
		Steps:             append([]int32(nil), st.Steps...),
		Step:              st.Step,
		CanaryWeight:      st.CanaryWeight,
		PromotionStage:    stageToProto(st.PromotionStage),
		FailedChecks:      st.FailedChecks,
		StepStartedAt:     timestamp(st.StepStartedAt),
		LastAnalysisAt:    timestamp(st.LastAnalysisAt),
		StageStartedAt:    timestamp(st.StageStartedAt),
		Message:           st.Message,
		LastAction:        actionToProto(st.LastAction),
	}
	if h := st.Hold; h != nil {
		out.Hold = &rolloutpb.Hold{Reason: h.Reason, Message: h.Message, Since: timestamp(&h.Since)}
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		out.Conditions = append(out.Conditions, &rolloutpb.Condition{
			Type:               c.Type,
			Status:             string(c.Status),
			Reason:             c.Reason,
			Message:            c.Message,
			LastTransitionTime: timestamp(&c.LastTransitionTime),
			ObservedGeneration: c.ObservedGeneration,
		})
	}
	if n := len(st.Decisions); n > 0 {
		out.LastDecision = DecisionToProto(&st.Decisions[n-1])
	}
	for _, c := range st.Cohorts {
		out.Cohorts = append(out.Cohorts, c.Name)
	}
	for _, fl := range st.Flags {
		out.Flags = append(out.Flags, &rolloutpb.ReleaseFlag{
			Flag: fl.Flag, ConfigMap: fl.ConfigMap, Key: fl.Key, Serving: fl.Serving, State: string(fl.State), Message: fl.Message,
		})
	}
	return out
}

// DecisionToProto converts one entry of the decision log.
func DecisionToProto(d *rollout.DecisionRecord) *rolloutpb.Decision {
	out := &rolloutpb.Decision{
		At:       timestamp(&d.At),
		Revision: d.Revision,
		Step:     d.Step,
		Weight:   d.Weight,
		Verdict:  verdictToProto(d.Verdict),
		Message:  d.Message,
		Flags:    append([]string(nil), d.Flags...),
	}
	for i := range d.Checks {
		out.Checks = append(out.Checks, checkToProto(&d.Checks[i]))
	}
	return out
}

func checkToProto(c *analysis.Check) *rolloutpb.Check {
	out := &rolloutpb.Check{
		Metric:    c.Metric,
		Query:     c.Query,
		Threshold: c.Threshold,
		Samples:   c.Samples,
		Outcome:   outcomeToProto(c.Outcome),
		Message:   c.Message,
	}
	if c.Value != nil {
		v := *c.Value
		out.Value = &v
	}
	if !c.At.IsZero() {
		out.At = timestamppb.New(c.At)
	}
	return out
}

func actionToProto(a *rollout.ActionRecord) *rolloutpb.Action {
	if a == nil {
		return nil
	}
	// An annotation's action has neither request id nor revision.
	return &rolloutpb.Action{Kind: ActionKindToProto(a.Kind), By: a.By, Reason: a.Reason, At: timestamp(&a.At), RequestId: a.RequestID, Revision: a.Revision}
}

// images converts the status's images: containers, then init containers.
func images(in []rollout.ContainerImage) []*rolloutpb.ContainerImage {
	if len(in) == 0 {
		return nil
	}
	out := make([]*rolloutpb.ContainerImage, len(in))
	for i, c := range in {
		out[i] = &rolloutpb.ContainerImage{Container: c.Container, Image: c.Image, Init: c.Init}
	}
	return out
}

func timestamp(t *metav1.Time) *timestamppb.Timestamp {
	if t == nil || t.IsZero() {
		return nil
	}
	return timestamppb.New(t.Time)
}

func phaseToProto(p rollout.Phase) rolloutpb.Phase {
	switch p {
	case rollout.PhaseInitializing:
		return rolloutpb.Phase_PHASE_INITIALIZING
	case rollout.PhaseIdle:
		return rolloutpb.Phase_PHASE_IDLE
	case rollout.PhaseProgressing:
		return rolloutpb.Phase_PHASE_PROGRESSING
	case rollout.PhasePaused:
		return rolloutpb.Phase_PHASE_PAUSED
	case rollout.PhasePromoting:
		return rolloutpb.Phase_PHASE_PROMOTING
	case rollout.PhaseSucceeded:
		return rolloutpb.Phase_PHASE_SUCCEEDED
	case rollout.PhaseRolledBack:
		return rolloutpb.Phase_PHASE_ROLLED_BACK
	case rollout.PhaseAborted:
		return rolloutpb.Phase_PHASE_ABORTED
	}
	return rolloutpb.Phase_PHASE_UNSPECIFIED
}

func stageToProto(s string) rolloutpb.PromotionStage {
	switch s {
	case rollout.StageUpdateStable:
		return rolloutpb.PromotionStage_PROMOTION_STAGE_UPDATE_STABLE
	case rollout.StageFinalize:
		return rolloutpb.PromotionStage_PROMOTION_STAGE_FINALIZE
	}
	return rolloutpb.PromotionStage_PROMOTION_STAGE_UNSPECIFIED
}

// ActionKindToProto converts an action kind; unknown kinds are
// ACTION_KIND_UNSPECIFIED.
func ActionKindToProto(k rollout.ActionKind) rolloutpb.ActionKind {
	switch k {
	case rollout.ActionPromote:
		return rolloutpb.ActionKind_ACTION_KIND_PROMOTE
	case rollout.ActionPromoteFull:
		return rolloutpb.ActionKind_ACTION_KIND_PROMOTE_FULL
	case rollout.ActionAbort:
		return rolloutpb.ActionKind_ACTION_KIND_ABORT
	case rollout.ActionPause:
		return rolloutpb.ActionKind_ACTION_KIND_PAUSE
	case rollout.ActionResume:
		return rolloutpb.ActionKind_ACTION_KIND_RESUME
	case ActionRetry:
		return rolloutpb.ActionKind_ACTION_KIND_RETRY
	case ActionSetImage:
		return rolloutpb.ActionKind_ACTION_KIND_SET_IMAGE
	}
	return rolloutpb.ActionKind_ACTION_KIND_UNSPECIFIED
}

func verdictToProto(v rollout.Verdict) rolloutpb.Verdict {
	switch v {
	case rollout.VerdictStart:
		return rolloutpb.Verdict_VERDICT_START
	case rollout.VerdictRestart:
		return rolloutpb.Verdict_VERDICT_RESTART
	case rollout.VerdictAdvance:
		return rolloutpb.Verdict_VERDICT_ADVANCE
	case rollout.VerdictHold:
		return rolloutpb.Verdict_VERDICT_HOLD
	case rollout.VerdictFail:
		return rolloutpb.Verdict_VERDICT_FAIL
	case rollout.VerdictPromote:
		return rolloutpb.Verdict_VERDICT_PROMOTE
	case rollout.VerdictPromoted:
		return rolloutpb.Verdict_VERDICT_PROMOTED
	case rollout.VerdictRollback:
		return rolloutpb.Verdict_VERDICT_ROLLBACK
	case rollout.VerdictAbort:
		return rolloutpb.Verdict_VERDICT_ABORT
	case rollout.VerdictManual:
		return rolloutpb.Verdict_VERDICT_MANUAL
	case rollout.VerdictRevert:
		return rolloutpb.Verdict_VERDICT_REVERT
	}
	return rolloutpb.Verdict_VERDICT_UNSPECIFIED
}

func outcomeToProto(o analysis.Outcome) rolloutpb.Outcome {
	switch o {
	case analysis.Pass:
		return rolloutpb.Outcome_OUTCOME_PASS
	case analysis.Fail:
		return rolloutpb.Outcome_OUTCOME_FAIL
	case analysis.Inconclusive:
		return rolloutpb.Outcome_OUTCOME_INCONCLUSIVE
	case analysis.NotEnoughData:
		return rolloutpb.Outcome_OUTCOME_NOT_ENOUGH_DATA
	case analysis.Error:
		return rolloutpb.Outcome_OUTCOME_ERROR
	}
	return rolloutpb.Outcome_OUTCOME_UNSPECIFIED
}
