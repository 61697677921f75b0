package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// atStep is a Flight at step 0 (10%) of r2 over r1, whose step started
// a full interval ago: analysis is due.
func atStep(now time.Time, failed int32) Input {
	started := metav1.NewTime(now.Add(-time.Minute))
	return Input{
		Now:    now,
		Policy: &Policy{Name: "p", Steps: []int32{10, 50}, Interval: time.Minute, FailureLimit: 2, ProgressDeadline: 5 * time.Minute, MaxWeight: 50},
		Status: v1alpha1.FlightStatus{
			Phase: v1alpha1.PhaseProgressing, StableRevision: "r1", CanaryRevision: "r2", Steps: []int32{10, 50},
			Step: 0, CanaryWeight: 10, FailedChecks: failed, RevisionStartedAt: &started, StepStartedAt: &started,
		},
		Observed: Observed{
			DesiredRevision: "r2", DeploymentRevision: "r1", DeploymentSettled: true, DeploymentPaused: true,
			CanaryRevision: "r2", CanaryReplicas: 1, CanaryReady: true, Weights: traffic.Weights{Stable: 90, Canary: 10},
		},
	}
}

func check(metric string, o analysis.Outcome, v float64) analysis.Check {
	return analysis.Check{Metric: metric, Outcome: o, Value: &v, Threshold: ">= 0.99", Samples: 400}
}

// summary is the part of a decision these tests judge.
type summary struct {
	Phase      v1alpha1.Phase
	Weight     int32
	Failed     int32
	Hold       string
	Weights    []traffic.Weights // every SetWeights, in order
	NeedChecks bool
}

func summarize(d Decision) summary {
	s := summary{Phase: d.Status.Phase, Weight: d.Status.CanaryWeight, Failed: d.Status.FailedChecks, NeedChecks: d.NeedChecks}
	if d.Status.Hold != nil {
		s.Hold = d.Status.Hold.Reason
	}
	for _, a := range d.Actions {
		if w, ok := a.(SetWeights); ok {
			s.Weights = append(s.Weights, w.Weights)
		}
	}
	return s
}

func TestDecideJudgesAStep(t *testing.T) {
	now := epoch.Add(time.Hour)
	tests := []struct {
		name   string
		in     func() Input
		checks []analysis.Check
		want   summary
	}{
		{
			name:   "advances to the next weight when every check passes",
			in:     func() Input { return atStep(now, 0) },
			checks: []analysis.Check{check("success-rate", analysis.Pass, 0.999), check("latency-p95", analysis.Pass, 120)},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 50, Weights: []traffic.Weights{{Stable: 50, Canary: 50}}},
		},
		{
			name:   "counts a failed check and stays when below the failure limit",
			in:     func() Input { return atStep(now, 0) },
			checks: []analysis.Check{check("success-rate", analysis.Fail, 0.9)},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Failed: 1},
		},
		{
			name:   "rolls back when failed checks reach the limit",
			in:     func() Input { return atStep(now, 1) },
			checks: []analysis.Check{check("success-rate", analysis.Fail, 0.9)},
			want:   summary{Phase: v1alpha1.PhaseRollingBack, Weight: 0, Failed: 2, Weights: []traffic.Weights{{Stable: 100}}},
		},
		{
			name:   "holds when Prometheus is unreachable, without counting a failure",
			in:     func() Input { return atStep(now, 1) },
			checks: []analysis.Check{{Metric: "success-rate", Outcome: analysis.Error, Message: "connection refused"}},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Failed: 1, Hold: v1alpha1.HoldAnalysisError},
		},
		{
			name:   "holds on not enough data and does not advance",
			in:     func() Input { return atStep(now, 0) },
			checks: []analysis.Check{check("success-rate", analysis.Pass, 1), {Metric: "latency-p95", Outcome: analysis.NotEnoughData, Samples: 3}},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Hold: v1alpha1.HoldNotEnoughData},
		},
		{
			name:   "holds when a check is inconclusive",
			in:     func() Input { return atStep(now, 0) },
			checks: []analysis.Check{{Metric: "compare", Outcome: analysis.Inconclusive}},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Hold: v1alpha1.HoldInconclusive},
		},
		{
			name:   "counts a failure even when another check cannot be measured",
			in:     func() Input { return atStep(now, 1) },
			checks: []analysis.Check{check("success-rate", analysis.Fail, 0.5), {Metric: "latency-p95", Outcome: analysis.Error}},
			want:   summary{Phase: v1alpha1.PhaseRollingBack, Failed: 2, Weights: []traffic.Weights{{Stable: 100}}},
		},
		{
			name: "promotes after the last step passes: all traffic to the canary, stable unpaused",
			in: func() Input {
				in := atStep(now, 0)
				in.Status.Step, in.Status.CanaryWeight = 1, 50
				in.Weights = traffic.Weights{Stable: 50, Canary: 50}
				return in
			},
			checks: []analysis.Check{check("success-rate", analysis.Pass, 1)},
			want:   summary{Phase: v1alpha1.PhasePromoting, Weight: 100, Weights: []traffic.Weights{{Canary: 100}}},
		},
		{
			name: "does not judge before the step has served a full interval",
			in: func() Input {
				in := atStep(now, 0)
				in.Now = now.Add(-time.Second)
				return in
			},
			want: summary{Phase: v1alpha1.PhaseProgressing, Weight: 10},
		},
		{
			name: "asks for checks when analysis is due and none were given",
			in:   func() Input { return atStep(now, 0) },
			want: summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, NeedChecks: true},
		},
		{
			name: "re-asserts the weight when the routing drifted, instead of judging",
			in: func() Input {
				in := atStep(now, 0)
				in.Weights = traffic.Weights{Stable: 100}
				return in
			},
			checks: []analysis.Check{check("success-rate", analysis.Pass, 1)},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Weights: []traffic.Weights{{Stable: 90, Canary: 10}}},
		},
		{
			name: "holds when the canary stops being ready, and judges nothing; a pod still serves its share",
			in: func() Input {
				in := atStep(now, 0)
				in.CanaryReplicas, in.CanaryAvailable, in.CanaryReady = 2, 1, false
				return in
			},
			checks: []analysis.Check{check("success-rate", analysis.Pass, 1)},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Hold: v1alpha1.HoldCanaryNotReady},
		},
		{
			name: "holds when the canary has no pod ready, its share back on stable (its users would get 503s)",
			in: func() Input {
				in := atStep(now, 0)
				in.CanaryAvailable, in.CanaryReady = 0, false
				return in
			},
			checks: []analysis.Check{check("success-rate", analysis.Pass, 1)},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Hold: v1alpha1.HoldCanaryNotReady, Weights: []traffic.Weights{{Stable: 100}}},
		},
		{
			name: "holds everything when the routing cannot be read",
			in: func() Input {
				in := atStep(now, 0)
				in.RoutingError = "virtualservice demo/shop: conflict"
				return in
			},
			checks: []analysis.Check{check("success-rate", analysis.Pass, 1)},
			want:   summary{Phase: v1alpha1.PhaseProgressing, Weight: 10, Hold: v1alpha1.HoldRouting},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			in.Checks = tt.checks
			if diff := cmp.Diff(tt.want, summarize(Decide(in))); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideNeverMutatesItsInput(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 1)
	in.Status.Decisions = []v1alpha1.DecisionRecord{{Verdict: v1alpha1.VerdictStart, Checks: []analysis.Check{check("success-rate", analysis.Pass, 1)}}}
	in.Checks = []analysis.Check{check("success-rate", analysis.Fail, 0.5)}
	before := in.Status.DeepCopy()
	Decide(in)
	if diff := cmp.Diff(before, &in.Status); diff != "" {
		t.Fatalf("Decide changed its input status (-before +after):\n%s", diff)
	}
}

func TestManualActionIsTakenOnceAcrossRestarts(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Now = now.Add(-30 * time.Second) // not due: only the action acts
	in.Action = &ActionRequest{Kind: v1alpha1.ActionPromote, By: "annotation"}
	first := Decide(in)
	if first.Status.CanaryWeight != 50 {
		t.Fatalf("promote moved the canary to %d%%, want 50%%", first.Status.CanaryWeight)
	}
	// fledge restarts before the annotation's removal is seen: the same
	// annotation must not pass another step.
	in.Status = first.Status
	in.Weights = traffic.Weights{Stable: 50, Canary: 50}
	again := Decide(in)
	if again.Status.CanaryWeight != 50 || again.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("the same annotation acted twice: phase %s at %d%%", again.Status.Phase, again.Status.CanaryWeight)
	}
	if diff := cmp.Diff([]Action{ClearAction{Value: v1alpha1.ActionPromote}}, again.Actions); diff != "" {
		t.Errorf("actions on the repeated annotation (-want +got):\n%s", diff)
	}
	// Once its removal is seen, a new promote annotation is a new action.
	in.Status, in.Action = again.Status, nil
	cleared := Decide(in)
	in.Status, in.Action = cleared.Status, &ActionRequest{Kind: v1alpha1.ActionPromote, By: "annotation"}
	if got := Decide(in).Status.Phase; got != v1alpha1.PhasePromoting {
		t.Fatalf("a new promote after the last step: phase %s, want %s", got, v1alpha1.PhasePromoting)
	}
}

func BenchmarkDecide(b *testing.B) {
	in := atStep(epoch.Add(time.Hour), 0)
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 0.999), check("latency-p95", analysis.Pass, 120)}
	for b.Loop() {
		Decide(in)
	}
}

// BenchmarkDecideWithAFullLog is a look at a Flight whose decision log is
// full (MaxDecisions records of two checks each), as a long rollout's is.
func BenchmarkDecideWithAFullLog(b *testing.B) {
	in := atStep(epoch.Add(time.Hour), 0)
	checks := []analysis.Check{check("success-rate", analysis.Pass, 0.999), check("latency-p95", analysis.Pass, 120)}
	for i := range MaxDecisions {
		in.Status.Decisions = append(in.Status.Decisions, v1alpha1.DecisionRecord{
			At: metav1.NewTime(epoch.Add(time.Duration(i) * time.Minute)), Verdict: v1alpha1.VerdictHold,
			Message: "step 1/3 at 10%: cannot judge: success-rate not enough data", Checks: checks})
	}
	in.Checks = checks
	for b.Loop() {
		Decide(in)
	}
}

func TestAPIRequestsAreIdempotentByRequestID(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Action = &ActionRequest{Kind: v1alpha1.ActionPromoteFull, By: "api:ci", RequestID: "req-1"}
	first := Decide(in)
	if first.Action == nil || !first.Action.Taken || first.Action.Replay || first.Status.Phase != v1alpha1.PhasePromoting {
		t.Fatalf("first request: outcome %+v, phase %s; want taken, promoting", first.Action, first.Status.Phase)
	}
	for _, a := range first.Actions {
		if _, ok := a.(ClearAction); ok {
			t.Error("an API request cleared the action annotation")
		}
	}
	// The same request again (a retry after a lost answer): answered from
	// the status, nothing done again.
	in.Status = first.Status
	in.Now = now.Add(time.Second)
	again := Decide(in)
	if again.Action == nil || !again.Action.Replay || !again.Action.Taken {
		t.Errorf("replay: outcome %+v, want a replay of a taken request", again.Action)
	}
	if again.Status.LastAction.At != first.Status.LastAction.At {
		t.Error("a replayed request was recorded again")
	}
	// Another request id for the same kind is a new request: refused, as
	// nothing is in flight to promote any more.
	in.Action = &ActionRequest{Kind: v1alpha1.ActionPromoteFull, By: "api:ci", RequestID: "req-2"}
	other := Decide(in)
	if other.Action == nil || other.Action.Taken || other.Action.Refusal != ActionNotApplicable {
		t.Errorf("a new request while promoting: outcome %+v, want refused as not applicable", other.Action)
	}
}

func TestAPIRequestsCheckTheRevisionPrecondition(t *testing.T) {
	in := atStep(epoch.Add(time.Hour), 0)
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 0.999)}
	in.Action = &ActionRequest{Kind: v1alpha1.ActionAbort, By: "api:ci", Reason: "bad", RequestID: "r", Revision: "r9"}
	d := Decide(in)
	if d.Action == nil || d.Action.Taken || d.Action.Refusal != ActionRevisionMismatch || d.Status.Phase != v1alpha1.PhaseProgressing {
		t.Errorf("abort of another revision: outcome %+v, phase %s; want refused, still progressing", d.Action, d.Status.Phase)
	}
	in.Action.Revision, in.Action.RequestID = "r2", "r-2"
	if d := Decide(in); d.Action == nil || !d.Action.Taken || rejectedTo(d.Status) != v1alpha1.PhaseAborted {
		t.Errorf("abort of the canary's revision: outcome %+v, phase %s; want taken, aborted", d.Action, d.Status.Phase)
	}
}

func TestRetryCanariesARejectedRevisionAgain(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Status.Phase, in.Status.RejectedRevision, in.Status.Step, in.Status.CanaryWeight = v1alpha1.PhaseRolledBack, "r2", -1, 0
	in.Weights = traffic.Weights{Stable: 100}
	if d := Decide(in); d.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("without a retry a rejected revision stays rejected, got %s", d.Status.Phase)
	}
	in.Action = &ActionRequest{Kind: v1alpha1.ActionRetry, By: "api:ci", RequestID: "retry-1"}
	d := Decide(in)
	if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.CanaryRevision != "r2" || d.Status.RejectedRevision != "" || !d.Action.Taken {
		t.Errorf("retry: phase %s canary %s rejected %q outcome %+v; want r2 canaried again", d.Status.Phase, d.Status.CanaryRevision, d.Status.RejectedRevision, d.Action)
	}
	in.DesiredRevision = "r3" // the template moved on: nothing to retry
	in.Action.RequestID = "retry-2"
	if d := Decide(in); d.Action.Taken {
		t.Errorf("retry of a revision the Deployment no longer wants was taken: %+v", d.Action)
	}
}

func TestARequestIDIsNotReusedForAnotherAction(t *testing.T) {
	in := atStep(epoch.Add(time.Hour), 0)
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 0.999)}
	in.Action = &ActionRequest{Kind: v1alpha1.ActionPause, By: "api:ci", RequestID: "r-1"}
	paused := Decide(in)
	in.Status = paused.Status
	in.Action = &ActionRequest{Kind: v1alpha1.ActionAbort, By: "api:ci", Reason: "bad", RequestID: "r-1"}
	d := Decide(in)
	if d.Action == nil || d.Action.Taken || d.Action.Refusal != ActionRequestIDReused || d.Status.Phase != v1alpha1.PhasePaused {
		t.Errorf("abort under a pause's request id: outcome %+v, phase %s; want refused as reused, still paused", d.Action, d.Status.Phase)
	}
	if d.Status.LastAction.Kind != v1alpha1.ActionPause {
		t.Errorf("last action %s: a refused request must not replace it", d.Status.LastAction.Kind)
	}
}

// BenchmarkDecideWithReleaseFlags is a step's judgement with a linked
// release flag: the flag's definition is hashed and rewritten on every
// look (twice: before and after deciding) and written on the advance.
func BenchmarkDecideWithReleaseFlags(b *testing.B) {
	in := atStep(epoch.Add(time.Hour), 0)
	p := *in.Policy
	p.ReleaseFlags = []ReleaseFlag{{ConfigMap: "flags", Key: DefaultFlagKey, Final: "on",
		Link: flags.Link{Flag: "new-checkout", On: "on", Off: "off", BucketBy: "targetingKey"}}}
	in.Policy = &p
	doc := `{"flags":{"new-checkout":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",` +
		`"targeting":{"fractional":[{"var":"targetingKey"},["on",10],["off",90]]}},` +
		`"dark-mode":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`
	in.FlagDocs = map[string]FlagDoc{FlagDocKey("flags", DefaultFlagKey): {Doc: doc, ResourceVersion: "7"}}
	h, err := flags.DefinitionHash([]byte(doc), "new-checkout")
	if err != nil {
		b.Fatal(err)
	}
	in.Status.Flags = []v1alpha1.FlagStatus{{ConfigMap: "flags", Key: DefaultFlagKey, Flag: "new-checkout", On: "on", Off: "off",
		BucketBy: "targetingKey", Final: "on", State: v1alpha1.FlagInSync, Applied: h}}
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 0.999), check("latency-p95", analysis.Pass, 120)}
	d := Decide(in)
	wrote := false
	for _, a := range d.Actions {
		_, ok := a.(WriteFlags)
		wrote = wrote || ok
	}
	if !wrote || d.Status.Step != 1 {
		b.Fatalf("the benchmark's decision did not advance and write the flag: step %d, actions %v", d.Status.Step, d.Actions)
	}
	for b.Loop() {
		Decide(in)
	}
}

// A canary name someone else holds: no canary starts (the object is never
// used or changed), a canary in flight loses its traffic to stable, and a
// Flight that needs no canary is not held for it.
func TestANameTakenHoldsWhatNeedsACanaryAndChangesNothingElse(t *testing.T) {
	now := epoch.Add(time.Hour)
	const taken = "deployment demo/shop-canary exists and is not fledge's"

	waiting := atStep(now, 0)
	waiting.Status.Phase, waiting.Status.Step, waiting.Status.CanaryWeight, waiting.Status.CanaryRevision = v1alpha1.PhaseIdle, -1, 0, ""
	waiting.Weights, waiting.CanaryRevision, waiting.CanaryReplicas, waiting.CanaryReady = traffic.Weights{Stable: 100}, "", 0, false
	waiting.NameTaken = taken
	d := Decide(waiting)
	if d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldNameTaken || !strings.Contains(d.Status.Hold.Message, taken) {
		t.Errorf("a new revision: hold %+v, want NameTaken naming the object", d.Status.Hold)
	}
	if d.Status.Phase != v1alpha1.PhaseIdle || len(d.Actions) > 0 && !onlyNotices(d.Actions) {
		t.Errorf("a new revision: phase %s, actions %#v; want idle, and nothing done", d.Status.Phase, d.Actions)
	}
	if d.RequeueAfter <= 0 {
		t.Error("a hold on a taken name must look again by itself")
	}

	inFlight := atStep(now, 0)
	inFlight.NameTaken = taken
	d = Decide(inFlight)
	if d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldNameTaken {
		t.Errorf("in flight: hold %+v, want NameTaken", d.Status.Hold)
	}
	if got := summarize(d).Weights; len(got) != 1 || got[0] != (traffic.Weights{Stable: 100}) {
		t.Errorf("in flight: weights set %v, want all traffic on stable", got)
	}
	for _, a := range d.Actions {
		switch a.(type) {
		case EnsureCanary, ScaleCanaryDown, DeleteCanary:
			t.Errorf("in flight: %T on a name fledge does not hold", a)
		}
	}

	atRest := waiting
	atRest.DesiredRevision = atRest.Status.StableRevision
	atRest.Status.Phase = v1alpha1.PhaseSucceeded
	if d := Decide(atRest); d.Status.Hold != nil {
		t.Errorf("at rest: hold %+v, want none (nothing needs a canary)", d.Status.Hold)
	}

	// Once the name is free, the canary starts.
	free := waiting
	free.NameTaken = ""
	if d := Decide(free); d.Status.Phase != v1alpha1.PhaseProgressing {
		t.Errorf("name free: phase %s (%s), want progressing", d.Status.Phase, d.Status.Message)
	}
}

// onlyNotices: events and deliveries, nothing that changes the cluster.
func onlyNotices(as []Action) bool {
	for _, a := range as {
		switch a.(type) {
		case RecordEvent, Deliver, CallHook:
		default:
			return false
		}
	}
	return true
}

// rejectedTo is where a decision is taking the Flight: for a rollback or
// an abort, the phase it ends in once the routing reads back at stable.
func rejectedTo(st v1alpha1.FlightStatus) v1alpha1.Phase {
	if st.Phase == v1alpha1.PhaseRollingBack && st.RollingBack != nil {
		return st.RollingBack.Phase
	}
	return st.Phase
}

// A rollback is reported only once the routing reads back at 100% stable:
// until then the Flight is RollingBack, sets the weights again with
// backoff, holds (and says so) when it takes more than a few seconds, and
// neither tells Slack nor scales the canary down (it still serves what
// the routing sends it).
func TestARollbackIsReportedOnlyOnceTheRoutingReadsBackAtStable(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 1)
	in.Policy.Slack = &Slack{Secret: "fledge-slack"}
	in.Checks = []analysis.Check{check("success-rate", analysis.Fail, 0.5)}
	d := Decide(in)
	if d.Status.Phase != v1alpha1.PhaseRollingBack || d.Status.RollingBack == nil || d.Status.RollingBack.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, rolling back %+v; want RollingBack towards RolledBack", d.Status.Phase, d.Status.RollingBack)
	}
	if d.Status.RejectedRevision != "" || !strings.HasPrefix(d.Status.Message, "rolling back: ") {
		t.Errorf("rejected %q, message %q: want nothing rejected yet, and a message that says rolling back", d.Status.RejectedRevision, d.Status.Message)
	}
	for _, a := range d.Actions {
		switch a := a.(type) {
		case ScaleCanaryDown:
			t.Error("the canary is scaled down before traffic is off it")
		case Deliver:
			if a.Delivery.Event == EventRolledBack {
				t.Error("Slack hears of the rollback before it is done")
			}
		}
	}

	// The routing write failed: it still reads 10% canary.
	in.Checks = nil
	waits := []time.Duration{}
	for _, after := range []time.Duration{time.Second, 5 * time.Second, 12 * time.Second, time.Minute, 3 * time.Minute} {
		in.Status, in.Now = d.Status, now.Add(after)
		d = Decide(in)
		if d.Status.Phase != v1alpha1.PhaseRollingBack || len(summarize(d).Weights) != 1 {
			t.Fatalf("%s later, routing at 10%%: phase %s, weights set %v; want still rolling back, setting stable again", after, d.Status.Phase, summarize(d).Weights)
		}
		waits = append(waits, d.RequeueAfter)
		held := d.Status.Hold != nil && d.Status.Hold.Reason == v1alpha1.HoldRouting
		if held != (after >= rollingBackHold) || !strings.Contains(d.Status.Message, "routing still reads 10% canary") {
			t.Errorf("%s later: hold %+v, message %q; want a routing hold from %s on, and the weights read", after, d.Status.Hold, d.Status.Message, rollingBackHold)
		}
	}
	if !slices.IsSorted(waits) || waits[0] != time.Second || waits[len(waits)-1] != rollingBackRetry {
		t.Errorf("retries after %v: want growing from 1s to %s", waits, rollingBackRetry)
	}

	// Read back at stable: rolled back, canary down, Slack told.
	in.Status, in.Now, in.Weights = d.Status, now.Add(4*time.Minute), traffic.Weights{Stable: 100}
	d = Decide(in)
	if d.Status.Phase != v1alpha1.PhaseRolledBack || d.Status.RejectedRevision != "r2" || d.Status.RollingBack != nil || d.Status.Hold != nil {
		t.Fatalf("phase %s, rejected %q, rolling back %+v, hold %+v; want RolledBack, r2 rejected, nothing pending", d.Status.Phase, d.Status.RejectedRevision, d.Status.RollingBack, d.Status.Hold)
	}
	scaled := slices.ContainsFunc(d.Actions, func(a Action) bool { _, ok := a.(ScaleCanaryDown); return ok })
	told := slices.ContainsFunc(d.Status.Outbox, func(e v1alpha1.Delivery) bool {
		return e.Event == EventRolledBack && strings.Contains(e.Notification.Reason, "success-rate")
	})
	if !scaled || !told {
		t.Errorf("actions %#v, outbox %+v: want the canary scaled down and Slack told why", d.Actions, d.Status.Outbox)
	}
}

// A Deployment taken over is paused on the first look, before the routing
// is set up or found wrong, whenever that stops nothing half-way: settled,
// or running its own template alone while it scales up (just created).
// One rolling between two templates is left to finish first.
func TestATakeOverPausesTheDeploymentFirst(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	policy := &Policy{Name: "p", Steps: []int32{10, 50}, Interval: time.Minute, FailureLimit: 2, ProgressDeadline: 5 * time.Minute, MaxWeight: 50}
	for _, c := range []struct {
		name      string
		observed  Observed
		wantPause bool
		wantHold  string
	}{
		{"settled", Observed{DesiredRevision: "r1", DeploymentRevision: "r1", DeploymentSettled: true}, true, ""},
		{"just created, its one ReplicaSet scaling up", Observed{DesiredRevision: "r1", DeploymentRevision: "r1", DeploymentOneRevision: true},
			true, v1alpha1.HoldDeploymentRollout},
		{"its routing wrong", Observed{DesiredRevision: "r1", DeploymentRevision: "r1", DeploymentSettled: true, RoutingError: "virtualservice shop/other routes web"},
			true, v1alpha1.HoldRouting},
		{"rolling between two templates", Observed{DesiredRevision: "r2", DeploymentRevision: "r2"}, false, v1alpha1.HoldDeploymentRollout},
	} {
		d := Decide(Input{Now: now, Policy: policy, Observed: c.observed})
		var names []string
		for _, a := range d.Actions {
			names = append(names, a.String())
		}
		paused := len(names) > 0 && names[0] == (SetStablePaused{Paused: true}).String()
		if paused != c.wantPause {
			t.Errorf("%s: actions %v; want the pause first: %t", c.name, names, c.wantPause)
		}
		hold := ""
		if d.Status.Hold != nil {
			hold = d.Status.Hold.Reason
		}
		if hold != c.wantHold {
			t.Errorf("%s: hold %q, want %q", c.name, hold, c.wantHold)
		}
	}
}

// A hold repeated round after round is one record in the decision log,
// brought up to date, not one a round: thirty of them would push the
// rollout's history out. A hold whose checks reach other outcomes is a
// record of its own, and so is anything else.
func TestARepeatedHoldIsOneRecordBroughtUpToDate(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Status.Decisions = []v1alpha1.DecisionRecord{{At: metav1.NewTime(now.Add(-2 * time.Minute)), Revision: "r2", Verdict: v1alpha1.VerdictAdvance, Message: "step 1/2: canary at 10%"}}
	notEnough := func(samples int64) []analysis.Check {
		return []analysis.Check{check("success-rate", analysis.Pass, 1), {Metric: "latency-p95", Outcome: analysis.NotEnoughData, Samples: samples}}
	}
	round := func(in Input, checks []analysis.Check) Decision {
		t.Helper()
		in.Checks = checks
		d := Decide(in)
		if d.NeedChecks {
			t.Fatalf("asked for checks again: %+v", d.Measure)
		}
		return d
	}
	d := round(in, notEnough(3))
	if n := len(d.Status.Decisions); n != 2 || d.Status.Decisions[1].Verdict != v1alpha1.VerdictHold {
		t.Fatalf("after the first hold: %d records, want the advance and the hold", n)
	}
	shared := in.Status.Decisions[0]
	for i, samples := range []int64{7, 12} {
		in.Status, in.Now = d.Status, now.Add(time.Duration(i+1)*time.Minute)
		d = round(in, notEnough(samples))
		if n := len(d.Status.Decisions); n != 2 {
			t.Fatalf("round %d of the same hold: %d records, want 2", i+2, n)
		}
		last := d.Status.Decisions[1]
		if !last.At.Time.Equal(in.Now) || last.Checks[1].Samples != samples {
			t.Errorf("round %d: the hold's record at %s with %d samples, want brought up to date (%s, %d)", i+2, last.At, last.Checks[1].Samples, in.Now, samples)
		}
		if last.Repeats != int32(i+1) || last.Since == nil || !last.Since.Time.Equal(now) {
			t.Errorf("round %d: repeats %d since %v, want %d since the first hold at %s", i+2, last.Repeats, last.Since, i+1, now)
		}
	}
	if diff := cmp.Diff(shared, in.Status.Decisions[0]); diff != "" {
		t.Errorf("the input's log was written (-before +after):\n%s", diff)
	}
	// Another outcome is another record.
	in.Status, in.Now = d.Status, now.Add(4*time.Minute)
	d = round(in, []analysis.Check{check("success-rate", analysis.Pass, 1), {Metric: "latency-p95", Outcome: analysis.Error, Message: "connection refused"}})
	if n := len(d.Status.Decisions); n != 3 {
		t.Errorf("a hold for another reason: %d records, want 3", n)
	}
}
