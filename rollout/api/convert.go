package api

import (
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// lazyFlight converts a Flight once, for every watcher that sends it. The
// result is shared: gRPC only reads messages it sends, and protobuf
// messages may be marshalled concurrently as long as nobody changes them.
type lazyFlight struct {
	once sync.Once
	in   *v1alpha1.Flight
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
func FlightToProto(f *v1alpha1.Flight) *rolloutpb.Flight {
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
		CanaryWithdrawn:   st.CanaryWithdrawn,
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
	out.Strategy = rollout.StrategyCanary
	switch {
	case st.BlueGreen != nil:
		out.Strategy = rollout.StrategyBlueGreen
	case len(st.Steps) == 1 && len(st.Cohorts) == 1 && st.Cohorts[0].Mirror > 0:
		out.Strategy = rollout.StrategyMirror
	}
	if c := rollout.CohortOf(st); c != nil && (st.Phase == v1alpha1.PhaseProgressing || st.Phase == v1alpha1.PhasePaused) {
		out.MirrorPercent = c.Mirror
		out.MirrorCompared = c.Mirror > 0 && c.Compared
	}
	out.Baseline = st.Baseline
	if w := st.Watch; w != nil {
		out.Watch = &rolloutpb.PromotionWatch{Revision: w.Revision, Previous: w.Previous, State: string(w.State),
			Since: timestamp(w.Since), Until: timestamp(w.Until), Message: w.Message}
	}
	for _, fl := range st.Flags {
		out.Flags = append(out.Flags, &rolloutpb.ReleaseFlag{
			Flag: fl.Flag, ConfigMap: fl.ConfigMap, Key: fl.Key, Serving: fl.Serving, State: string(fl.State), Message: fl.Message,
		})
	}
	return out
}

// DecisionToProto converts one entry of the decision log.
func DecisionToProto(d *v1alpha1.DecisionRecord) *rolloutpb.Decision {
	out := &rolloutpb.Decision{
		At:       timestamp(&d.At),
		Revision: d.Revision,
		Step:     d.Step,
		Weight:   d.Weight,
		Verdict:  verdictToProto(d.Verdict),
		Message:  d.Message,
		Flags:    append([]string(nil), d.Flags...),
		Repeats:  d.Repeats,
	}
	if d.Since != nil {
		out.Since = timestamp(d.Since)
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
	out.Compared = ComparedToProto(c.Compared)
	return out
}

// ComparedToProto converts a comparison's knowledge; nil stays nil (a
// threshold check, or a comparison not judged yet).
func ComparedToProto(c *analysis.Compared) *rolloutpb.Comparison {
	if c == nil {
		return nil
	}
	side := func(s analysis.Side) *rolloutpb.ComparisonSide {
		return &rolloutpb.ComparisonSide{Requests: s.Requests, Bad: s.Bad, Rate: s.Rate, Low: s.Low, High: s.High}
	}
	return &rolloutpb.Comparison{
		Canary: side(c.Canary), Stable: side(c.Stable), MaxIncrease: c.MaxIncrease, MaxRatio: c.MaxRatio,
		Evidence: c.Evidence, RollbackAt: c.RollbackAt, Confidence: c.Confidence, Looks: c.Looks,
		NoWorse: c.NoWorse, PromoteAt: c.PromoteAt, Against: c.Against,
	}
}

func actionToProto(a *v1alpha1.ActionRecord) *rolloutpb.Action {
	if a == nil {
		return nil
	}
	// An annotation's action has neither request id nor revision.
	return &rolloutpb.Action{Kind: ActionKindToProto(a.Kind), By: a.By, Reason: a.Reason, At: timestamp(&a.At), RequestId: a.RequestID, Revision: a.Revision}
}

// images converts the status's images: containers, then init containers.
func images(in []v1alpha1.ContainerImage) []*rolloutpb.ContainerImage {
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

func phaseToProto(p v1alpha1.Phase) rolloutpb.Phase {
	switch p {
	case v1alpha1.PhaseInitializing:
		return rolloutpb.Phase_PHASE_INITIALIZING
	case v1alpha1.PhaseIdle:
		return rolloutpb.Phase_PHASE_IDLE
	case v1alpha1.PhaseProgressing:
		return rolloutpb.Phase_PHASE_PROGRESSING
	case v1alpha1.PhasePaused:
		return rolloutpb.Phase_PHASE_PAUSED
	case v1alpha1.PhasePromoting:
		return rolloutpb.Phase_PHASE_PROMOTING
	case v1alpha1.PhaseSucceeded:
		return rolloutpb.Phase_PHASE_SUCCEEDED
	case v1alpha1.PhaseRolledBack:
		return rolloutpb.Phase_PHASE_ROLLED_BACK
	case v1alpha1.PhaseAborted:
		return rolloutpb.Phase_PHASE_ABORTED
	case v1alpha1.PhaseRollingBack:
		return rolloutpb.Phase_PHASE_ROLLING_BACK
	}
	return rolloutpb.Phase_PHASE_UNSPECIFIED
}

func stageToProto(s string) rolloutpb.PromotionStage {
	switch s {
	case v1alpha1.StageUpdateStable:
		return rolloutpb.PromotionStage_PROMOTION_STAGE_UPDATE_STABLE
	case v1alpha1.StageFinalize:
		return rolloutpb.PromotionStage_PROMOTION_STAGE_FINALIZE
	}
	return rolloutpb.PromotionStage_PROMOTION_STAGE_UNSPECIFIED
}

// ActionKindToProto converts an action kind; unknown kinds are
// ACTION_KIND_UNSPECIFIED.
func ActionKindToProto(k v1alpha1.ActionKind) rolloutpb.ActionKind {
	switch k {
	case v1alpha1.ActionPromote:
		return rolloutpb.ActionKind_ACTION_KIND_PROMOTE
	case v1alpha1.ActionPromoteFull:
		return rolloutpb.ActionKind_ACTION_KIND_PROMOTE_FULL
	case v1alpha1.ActionAbort:
		return rolloutpb.ActionKind_ACTION_KIND_ABORT
	case v1alpha1.ActionPause:
		return rolloutpb.ActionKind_ACTION_KIND_PAUSE
	case v1alpha1.ActionResume:
		return rolloutpb.ActionKind_ACTION_KIND_RESUME
	case ActionRetry:
		return rolloutpb.ActionKind_ACTION_KIND_RETRY
	case ActionSetImage:
		return rolloutpb.ActionKind_ACTION_KIND_SET_IMAGE
	}
	return rolloutpb.ActionKind_ACTION_KIND_UNSPECIFIED
}

func verdictToProto(v v1alpha1.Verdict) rolloutpb.Verdict {
	switch v {
	case v1alpha1.VerdictStart:
		return rolloutpb.Verdict_VERDICT_START
	case v1alpha1.VerdictRestart:
		return rolloutpb.Verdict_VERDICT_RESTART
	case v1alpha1.VerdictAdvance:
		return rolloutpb.Verdict_VERDICT_ADVANCE
	case v1alpha1.VerdictHold:
		return rolloutpb.Verdict_VERDICT_HOLD
	case v1alpha1.VerdictFail:
		return rolloutpb.Verdict_VERDICT_FAIL
	case v1alpha1.VerdictPromote:
		return rolloutpb.Verdict_VERDICT_PROMOTE
	case v1alpha1.VerdictPromoted:
		return rolloutpb.Verdict_VERDICT_PROMOTED
	case v1alpha1.VerdictRollback:
		return rolloutpb.Verdict_VERDICT_ROLLBACK
	case v1alpha1.VerdictAbort:
		return rolloutpb.Verdict_VERDICT_ABORT
	case v1alpha1.VerdictManual:
		return rolloutpb.Verdict_VERDICT_MANUAL
	case v1alpha1.VerdictRevert:
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
