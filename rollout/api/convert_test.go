package api

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestFlightToProto(t *testing.T) {
	at := func(m int) metav1.Time { return metav1.NewTime(time.Date(2026, 11, 22, 10, m, 0, 0, time.UTC)) }
	ts := func(m int) *timestamppb.Timestamp { return timestamppb.New(at(m).Time) }
	ptr := func(t metav1.Time) *metav1.Time { return &t }
	value := 0.991
	f := &v1alpha1.Flight{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "shop", UID: "uid-1", ResourceVersion: "42", CreationTimestamp: at(0)},
		Spec:       v1alpha1.FlightSpec{Deployment: "shop", Policy: "standard", Host: "shop.prod.svc"},
		Status: v1alpha1.FlightStatus{
			Phase:             v1alpha1.PhasePromoting,
			StableRevision:    "rev-a",
			CanaryRevision:    "rev-b",
			RejectedRevision:  "rev-x",
			Steps:             []int32{10, 40, 70},
			Step:              2,
			CanaryWeight:      100,
			PromotionStage:    v1alpha1.StageFinalize,
			FailedChecks:      1,
			StableImages:      []v1alpha1.ContainerImage{{Container: "shop", Image: "registry.example/shop:1"}},
			CanaryImages:      []v1alpha1.ContainerImage{{Container: "shop", Image: "registry.example/shop:2"}, {Container: "migrate", Image: "registry.example/migrate:1", Init: true}},
			RevisionStartedAt: ptr(at(1)),
			StepStartedAt:     ptr(at(2)),
			LastAnalysisAt:    ptr(at(3)),
			StageStartedAt:    ptr(at(4)),
			Hold:              &v1alpha1.Hold{Reason: v1alpha1.HoldDeploymentRollout, Message: "2/3 replicas updated", Since: at(4)},
			Message:           "promoting rev-b",
			LastAction:        &v1alpha1.ActionRecord{Kind: v1alpha1.ActionPromoteFull, By: "api:ci", Reason: "hotfix", At: at(3), RequestID: "ci-77", Revision: "r2"},
			Conditions: []metav1.Condition{{
				Type: "Progressing", Status: metav1.ConditionTrue, Reason: "Promoting", Message: "m", LastTransitionTime: at(4), ObservedGeneration: 7,
			}},
			Decisions: []v1alpha1.DecisionRecord{
				{At: at(1), Revision: "rev-b", Step: -1, Verdict: v1alpha1.VerdictStart, Message: "started"},
				{At: at(3), Revision: "rev-b", Step: 2, Weight: 70, Verdict: v1alpha1.VerdictPromote, Message: "all steps passed", Checks: []analysis.Check{
					{Metric: "success-rate", Query: "q1", Value: &value, Threshold: ">= 0.99", Samples: 1200, Outcome: analysis.Pass, At: at(3).Time},
					{Metric: "latency-p95", Query: "q2", Threshold: "<= 500", Outcome: analysis.Error, Message: "prometheus unreachable"},
				}},
			},
		},
	}
	want := &rolloutpb.Flight{
		Namespace: "prod", Name: "shop", Uid: "uid-1", ResourceVersion: "42", CreatedAt: ts(0),
		Policy: "standard", Host: "shop.prod.svc",
		StableRevision: "rev-a", CanaryRevision: "rev-b", RejectedRevision: "rev-x",
		StableImages:      []*rolloutpb.ContainerImage{{Container: "shop", Image: "registry.example/shop:1"}},
		CanaryImages:      []*rolloutpb.ContainerImage{{Container: "shop", Image: "registry.example/shop:2"}, {Container: "migrate", Image: "registry.example/migrate:1", Init: true}},
		RevisionStartedAt: ts(1),
		Phase:             rolloutpb.Phase_PHASE_PROMOTING,
		Steps:             []int32{10, 40, 70}, Step: 2, CanaryWeight: 100, Strategy: "canary",
		PromotionStage: rolloutpb.PromotionStage_PROMOTION_STAGE_FINALIZE,
		FailedChecks:   1,
		StepStartedAt:  ts(2), LastAnalysisAt: ts(3), StageStartedAt: ts(4),
		Hold:       &rolloutpb.Hold{Reason: "WaitingForDeployment", Message: "2/3 replicas updated", Since: ts(4)},
		Message:    "promoting rev-b",
		LastAction: &rolloutpb.Action{Kind: rolloutpb.ActionKind_ACTION_KIND_PROMOTE_FULL, By: "api:ci", Reason: "hotfix", At: ts(3), RequestId: "ci-77", Revision: "r2"},
		Conditions: []*rolloutpb.Condition{{Type: "Progressing", Status: "True", Reason: "Promoting", Message: "m", LastTransitionTime: ts(4), ObservedGeneration: 7}},
		LastDecision: &rolloutpb.Decision{
			At: ts(3), Revision: "rev-b", Step: 2, Weight: 70, Verdict: rolloutpb.Verdict_VERDICT_PROMOTE, Message: "all steps passed",
			Checks: []*rolloutpb.Check{
				{Metric: "success-rate", Query: "q1", Value: &value, Threshold: ">= 0.99", Samples: 1200, Outcome: rolloutpb.Outcome_OUTCOME_PASS, At: ts(3)},
				{Metric: "latency-p95", Query: "q2", Threshold: "<= 500", Outcome: rolloutpb.Outcome_OUTCOME_ERROR, Message: "prometheus unreachable"},
			},
		},
	}
	got := FlightToProto(f)
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("FlightToProto (-want +got):\n%s", diff)
	}
	mirrored := f.DeepCopy()
	mirrored.Status.Phase, mirrored.Status.Step, mirrored.Status.Steps = v1alpha1.PhaseProgressing, 0, []int32{0}
	mirrored.Status.Cohorts = []v1alpha1.CohortStage{{Name: "mirror", Mirror: 30}}
	fresh := &v1alpha1.Flight{Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Steps: []int32{20, 50}, Step: 0, CanaryWeight: 20, Baseline: "fresh"}}
	if got := FlightToProto(fresh); got.GetStrategy() != "canary" || got.GetBaseline() != "fresh" {
		t.Errorf("a canary with a fresh baseline: strategy %q, baseline %q; want canary, fresh", got.GetStrategy(), got.GetBaseline())
	}
	if got := FlightToProto(mirrored); got.GetStrategy() != "mirror" || got.GetMirrorPercent() != 30 {
		t.Errorf("a mirror revision: strategy %q, mirror %d%%; want mirror at 30%%", got.GetStrategy(), got.GetMirrorPercent())
	}
	until := metav1.NewTime(time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC))
	watched := &v1alpha1.Flight{Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseRolledBack, Step: -1,
		Watch: &v1alpha1.Watch{Revision: "r2", Previous: "r1", State: v1alpha1.WatchReverted, Until: &until, Message: "r2 regressed after its promotion"}}}
	if w := FlightToProto(watched).GetWatch(); w.GetRevision() != "r2" || w.GetPrevious() != "r1" || w.GetState() != "Reverted" ||
		!w.GetUntil().AsTime().Equal(until.Time) || w.GetMessage() != "r2 regressed after its promotion" {
		t.Errorf("a reverted watch: %v", w)
	}
	if FlightToProto(fresh).GetWatch() != nil {
		t.Errorf("a Flight without a watch converts with one")
	}
	f.Status.BlueGreen = &v1alpha1.BlueGreenPlan{}
	if got := FlightToProto(f).GetStrategy(); got != "blueGreen" {
		t.Errorf("a blue/green revision's strategy: %q, want blueGreen", got)
	}
	// The conversion shares nothing that a later change of the Flight
	// would show through.
	f.Status.Steps[0] = 99
	*f.Status.Decisions[1].Checks[0].Value = 0
	if got.Steps[0] != 10 || *got.LastDecision.Checks[0].Value != 0.991 {
		t.Errorf("the conversion shares memory with the Flight: %v", got)
	}
}

func TestEnumsCoverTheStatus(t *testing.T) {
	for _, p := range []v1alpha1.Phase{v1alpha1.PhaseInitializing, v1alpha1.PhaseIdle, v1alpha1.PhaseProgressing, v1alpha1.PhasePaused,
		v1alpha1.PhasePromoting, v1alpha1.PhaseSucceeded, v1alpha1.PhaseRolledBack, v1alpha1.PhaseAborted} {
		if phaseToProto(p) == rolloutpb.Phase_PHASE_UNSPECIFIED {
			t.Errorf("phase %s has no API value", p)
		}
	}
	for _, v := range []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictRestart, v1alpha1.VerdictAdvance, v1alpha1.VerdictHold,
		v1alpha1.VerdictFail, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted, v1alpha1.VerdictRollback, v1alpha1.VerdictAbort,
		v1alpha1.VerdictManual, v1alpha1.VerdictRevert} {
		if verdictToProto(v) == rolloutpb.Verdict_VERDICT_UNSPECIFIED {
			t.Errorf("verdict %s has no API value", v)
		}
	}
	for _, o := range []analysis.Outcome{analysis.Pass, analysis.Fail, analysis.Inconclusive, analysis.NotEnoughData, analysis.Error} {
		if outcomeToProto(o) == rolloutpb.Outcome_OUTCOME_UNSPECIFIED {
			t.Errorf("outcome %s has no API value", o)
		}
	}
	for _, k := range []v1alpha1.ActionKind{v1alpha1.ActionPromote, v1alpha1.ActionPromoteFull, v1alpha1.ActionAbort,
		v1alpha1.ActionPause, v1alpha1.ActionResume, ActionRetry, ActionSetImage} {
		if ActionKindToProto(k) == rolloutpb.ActionKind_ACTION_KIND_UNSPECIFIED {
			t.Errorf("action %s has no API value", k)
		}
	}
	if FlightToProto(&v1alpha1.Flight{}).GetPhase() != rolloutpb.Phase_PHASE_UNSPECIFIED {
		t.Error("an empty phase is not unspecified")
	}
}
