package api

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestFlightToProto(t *testing.T) {
	at := func(m int) metav1.Time { return metav1.NewTime(time.Date(2026, 11, 22, 10, m, 0, 0, time.UTC)) }
	ts := func(m int) *timestamppb.Timestamp { return timestamppb.New(at(m).Time) }
	ptr := func(t metav1.Time) *metav1.Time { return &t }
	value := 0.991
	f := &rollout.Flight{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "shop", UID: "uid-1", ResourceVersion: "42", CreationTimestamp: at(0)},
		Spec:       rollout.FlightSpec{Deployment: "shop", Policy: "standard", Host: "shop.prod.svc"},
		Status: rollout.FlightStatus{
			Phase:             rollout.PhasePromoting,
			StableRevision:    "rev-a",
			CanaryRevision:    "rev-b",
			RejectedRevision:  "rev-x",
			Steps:             []int32{10, 40, 70},
			Step:              2,
			CanaryWeight:      100,
			PromotionStage:    rollout.StageFinalize,
			FailedChecks:      1,
			StableImages:      []rollout.ContainerImage{{Container: "shop", Image: "registry.example/shop:1"}},
			CanaryImages:      []rollout.ContainerImage{{Container: "shop", Image: "registry.example/shop:2"}, {Container: "migrate", Image: "registry.example/migrate:1", Init: true}},
			RevisionStartedAt: ptr(at(1)),
			StepStartedAt:     ptr(at(2)),
			LastAnalysisAt:    ptr(at(3)),
			StageStartedAt:    ptr(at(4)),
			Hold:              &rollout.Hold{Reason: rollout.HoldDeploymentRollout, Message: "2/3 replicas updated", Since: at(4)},
			Message:           "promoting rev-b",
			LastAction:        &rollout.ActionRecord{Kind: rollout.ActionPromoteFull, By: "api:ci", Reason: "hotfix", At: at(3), RequestID: "ci-77", Revision: "r2"},
			Conditions: []metav1.Condition{{
				Type: "Progressing", Status: metav1.ConditionTrue, Reason: "Promoting", Message: "m", LastTransitionTime: at(4), ObservedGeneration: 7,
			}},
			Decisions: []rollout.DecisionRecord{
				{At: at(1), Revision: "rev-b", Step: -1, Verdict: rollout.VerdictStart, Message: "started"},
				{At: at(3), Revision: "rev-b", Step: 2, Weight: 70, Verdict: rollout.VerdictPromote, Message: "all steps passed", Checks: []analysis.Check{
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
		Steps:             []int32{10, 40, 70}, Step: 2, CanaryWeight: 100,
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
	// The conversion shares nothing that a later change of the Flight
	// would show through.
	f.Status.Steps[0] = 99
	*f.Status.Decisions[1].Checks[0].Value = 0
	if got.Steps[0] != 10 || *got.LastDecision.Checks[0].Value != 0.991 {
		t.Errorf("the conversion shares memory with the Flight: %v", got)
	}
}

func TestEnumsCoverTheStatus(t *testing.T) {
	for _, p := range []rollout.Phase{rollout.PhaseInitializing, rollout.PhaseIdle, rollout.PhaseProgressing, rollout.PhasePaused,
		rollout.PhasePromoting, rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhaseAborted} {
		if phaseToProto(p) == rolloutpb.Phase_PHASE_UNSPECIFIED {
			t.Errorf("phase %s has no API value", p)
		}
	}
	for _, v := range []rollout.Verdict{rollout.VerdictStart, rollout.VerdictRestart, rollout.VerdictAdvance, rollout.VerdictHold,
		rollout.VerdictFail, rollout.VerdictPromote, rollout.VerdictPromoted, rollout.VerdictRollback, rollout.VerdictAbort,
		rollout.VerdictManual, rollout.VerdictRevert} {
		if verdictToProto(v) == rolloutpb.Verdict_VERDICT_UNSPECIFIED {
			t.Errorf("verdict %s has no API value", v)
		}
	}
	for _, o := range []analysis.Outcome{analysis.Pass, analysis.Fail, analysis.Inconclusive, analysis.NotEnoughData, analysis.Error} {
		if outcomeToProto(o) == rolloutpb.Outcome_OUTCOME_UNSPECIFIED {
			t.Errorf("outcome %s has no API value", o)
		}
	}
	for _, k := range []rollout.ActionKind{rollout.ActionPromote, rollout.ActionPromoteFull, rollout.ActionAbort,
		rollout.ActionPause, rollout.ActionResume, ActionRetry, ActionSetImage} {
		if ActionKindToProto(k) == rolloutpb.ActionKind_ACTION_KIND_UNSPECIFIED {
			t.Errorf("action %s has no API value", k)
		}
	}
	if FlightToProto(&rollout.Flight{}).GetPhase() != rolloutpb.Phase_PHASE_UNSPECIFIED {
		t.Error("an empty phase is not unspecified")
	}
}
