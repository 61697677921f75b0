package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestMain(m *testing.M) {
	// Watch streams stop their goroutines when they end, even the sender
	// of a client that stopped reading.
	goleak.VerifyTestMain(m)
}

// progressing is a canary of rev-b at 40% (step 2 of 3).
func progressing() v1alpha1.FlightStatus {
	return v1alpha1.FlightStatus{
		Phase: v1alpha1.PhaseProgressing, StableRevision: "rev-a", CanaryRevision: "rev-b",
		Steps: []int32{10, 40, 70}, Step: 1, CanaryWeight: 40,
		StableImages: []v1alpha1.ContainerImage{{Container: "shop", Image: "registry.example/shop:1"}}, CanaryImages: []v1alpha1.ContainerImage{{Container: "shop", Image: "registry.example/shop:2"}},
		Decisions: []v1alpha1.DecisionRecord{
			{Revision: "rev-0", Verdict: v1alpha1.VerdictPromoted, Message: "old"},
			{Revision: "rev-b", Verdict: v1alpha1.VerdictStart, Step: -1, Message: "started"},
			{Revision: "rev-b", Verdict: v1alpha1.VerdictAdvance, Step: 1, Weight: 40, Message: "checks passed"},
		},
	}
}

type fixture struct {
	srv     *apitest.Server
	backend *apitest.Backend
	client  rolloutpb.RolloutsClient
	ctx     context.Context
}

// newFixture serves the API on bufconn over a Backend holding prod/shop
// (progressing), prod/cart and staging/shop (succeeded).
func newFixture(t *testing.T, opts apitest.Options) *fixture {
	t.Helper()
	opts.Bufconn = true
	if opts.Backend == nil {
		opts.Backend = apitest.NewBackend(0)
	}
	opts.Backend.Put(apitest.NewFlight("prod", "shop", progressing()), map[string]string{"team": "shop"})
	opts.Backend.Put(apitest.NewFlight("prod", "cart", v1alpha1.FlightStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: "rev-c"}), map[string]string{"team": "cart"})
	opts.Backend.Put(apitest.NewFlight("staging", "shop", v1alpha1.FlightStatus{Phase: v1alpha1.PhaseSucceeded}), nil)
	srv := apitest.Start(t, opts)
	// A bound on every call and stream: a lost event fails the test in a
	// minute instead of hanging the package until its 10-minute timeout.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return &fixture{srv: srv, backend: opts.Backend, client: rolloutpb.NewRolloutsClient(srv.Dial(t)), ctx: ctx}
}

func wantStatus(t *testing.T, err error, code codes.Code, inMsg ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("code %s (%q), want %s", st.Code(), st.Message(), code)
	}
	for _, s := range inMsg {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("message %q does not say %q", st.Message(), s)
		}
	}
}

func TestMutatingCallsAreRefused(t *testing.T) {
	promote := func(req *rolloutpb.PromoteRequest) func(*fixture) error {
		return func(f *fixture) error { _, err := f.client.Promote(f.ctx, req); return err }
	}
	setImage := func(req *rolloutpb.SetImageRequest) func(*fixture) error {
		return func(f *fixture) error { _, err := f.client.SetImage(f.ctx, req); return err }
	}
	tests := []struct {
		name      string
		setup     func(*apitest.Backend)
		call      func(*fixture) error
		wantCode  codes.Code
		wantInMsg []string
		// Whether the call reached the Backend's Act or SetImage.
		wantBackendCalls int
	}{
		{
			name:      "answers NotFound for a Deployment that has no flight",
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "ghost", RequestId: "r-1"}),
			wantCode:  codes.NotFound,
			wantInMsg: []string{"flight prod/ghost not found"},
		},
		{
			name: "refuses an abort without a reason",
			call: func(f *fixture) error {
				_, err := f.client.Abort(f.ctx, &rolloutpb.AbortRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Reason: "  "})
				return err
			},
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"reason is required for abort"},
		},
		{
			name:      "refuses a call without a request id",
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop"}),
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"request_id is required"},
		},
		{
			name:      "refuses a request id with a character outside [A-Za-z0-9._:-]",
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "run 42"}),
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"request_id", `"run 42"`},
		},
		{
			name:      "refuses a request id longer than 128 characters",
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: strings.Repeat("r", 129)}),
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"request_id", "at most 128"},
		},
		{
			name:      "refuses a reason longer than 256 characters",
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Reason: strings.Repeat("x", 257)}),
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"reason", "at most 256"},
		},
		{
			name:      "refuses a malformed image, naming the field",
			call:      setImage(&rolloutpb.SetImageRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Container: "app", Image: "Registry/Shop:1 2"}),
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"image", "not a valid image reference"},
		},
		{
			name:      "refuses SetImage without a container",
			call:      setImage(&rolloutpb.SetImageRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Image: "shop:2"}),
			wantCode:  codes.InvalidArgument,
			wantInMsg: []string{"container is required"},
		},
		{
			name:             "refuses SetImage of a container the Deployment does not have",
			call:             setImage(&rolloutpb.SetImageRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Container: "sidecar", Image: "shop:2"}),
			wantCode:         codes.InvalidArgument,
			wantInMsg:        []string{`no container "sidecar"`},
			wantBackendCalls: 1,
		},
		{
			name:      "refuses an action for a revision that is not the canary",
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Revision: "rev-a"}),
			wantCode:  codes.FailedPrecondition,
			wantInMsg: []string{`the canary revision of flight prod/shop is "rev-b", not "rev-a"`},
		},
		{
			name: "refuses a retry for a revision that is not the rejected one",
			call: func(f *fixture) error {
				_, err := f.client.Retry(f.ctx, &rolloutpb.RetryRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Revision: "rev-b"})
				return err
			},
			wantCode:  codes.FailedPrecondition,
			wantInMsg: []string{`flight prod/shop has no rejected revision`},
		},
		{
			name: "passes on the controller's refusal of an action that does not fit the phase",
			call: func(f *fixture) error {
				_, err := f.client.Resume(f.ctx, &rolloutpb.ResumeRequest{Namespace: "prod", Name: "shop", RequestId: "r-1"})
				return err
			},
			wantCode:         codes.FailedPrecondition,
			wantInMsg:        []string{"flight prod/shop", "resume while Progressing"},
			wantBackendCalls: 1,
		},
		{
			name: "refuses a request id reused for another action",
			call: func(f *fixture) error {
				if _, err := f.client.Pause(f.ctx, &rolloutpb.PauseRequest{Namespace: "prod", Name: "shop", RequestId: "r-1"}); err != nil {
					return err
				}
				_, err := f.client.Abort(f.ctx, &rolloutpb.AbortRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Reason: "oops"})
				return err
			},
			wantCode:         codes.InvalidArgument,
			wantInMsg:        []string{`request id "r-1" was a pause`},
			wantBackendCalls: 2,
		},
		{
			name:      "refuses to act on a replica that is not the leader, naming the leader",
			setup:     func(b *apitest.Backend) { b.SetLeader(false, "fledge-7d9f-1") },
			call:      promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-1"}),
			wantCode:  codes.Unavailable,
			wantInMsg: []string{"not the leader", `"fledge-7d9f-1"`},
		},
		{
			name:      "refuses SetImage on a replica that is not the leader",
			setup:     func(b *apitest.Backend) { b.SetLeader(false, "fledge-7d9f-1") },
			call:      setImage(&rolloutpb.SetImageRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Container: "app", Image: "shop:2"}),
			wantCode:  codes.Unavailable,
			wantInMsg: []string{`"fledge-7d9f-1"`},
		},
		{
			name:             "reports a leadership lost during the call as not the leader",
			setup:            func(b *apitest.Backend) { b.FailActs(&api.NotLeaderError{Leader: "fledge-2"}) },
			call:             promote(&rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-1"}),
			wantCode:         codes.Unavailable,
			wantInMsg:        []string{`the leader is "fledge-2"`},
			wantBackendCalls: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, apitest.Options{})
			if tc.setup != nil {
				tc.setup(f.backend)
			}
			wantStatus(t, tc.call(f), tc.wantCode, tc.wantInMsg...)
			if n := len(f.backend.Calls()); n != tc.wantBackendCalls {
				t.Errorf("the backend had %d calls, want %d", n, tc.wantBackendCalls)
			}
		})
	}
}

func TestNotLeaderCarriesTheLeaderAsADetail(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	f.backend.SetLeader(false, "fledge-7d9f-1")
	_, err := f.client.Pause(f.ctx, &rolloutpb.PauseRequest{Namespace: "prod", Name: "shop", RequestId: "r-1"})
	if leader, ok := api.LeaderFromError(err); !ok || leader != "fledge-7d9f-1" {
		t.Errorf("LeaderFromError(%v) = %q, %v; want fledge-7d9f-1", err, leader, ok)
	}
	if _, ok := api.LeaderFromError(status.Error(codes.Unavailable, "down")); ok {
		t.Error("LeaderFromError found a leader in a plain Unavailable")
	}
	// Reads do not need the leader.
	if _, err := f.client.Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"}); err != nil {
		t.Errorf("Get on a replica that is not the leader: %v", err)
	}
}

func TestPromoteFullIsPromoteFull(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	resp, err := f.client.Promote(f.ctx, &rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-full", Reason: "hotfix", Full: true, Revision: "rev-b"})
	if err != nil {
		t.Fatal(err)
	}
	calls := f.backend.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d backend calls, want 1", len(calls))
	}
	want := api.Action{Kind: v1alpha1.ActionPromoteFull, By: "api:" + apitest.User, Reason: "hotfix", RequestID: "r-full", Revision: "rev-b"}
	if calls[0].Action != want {
		t.Errorf("the backend got %+v, want %+v", calls[0].Action, want)
	}
	wantAction := &rolloutpb.Action{
		Kind: rolloutpb.ActionKind_ACTION_KIND_PROMOTE_FULL, By: "api:" + apitest.User, Reason: "hotfix",
		RequestId: "r-full", Revision: "rev-b", At: resp.GetFlight().GetLastAction().GetAt(),
	}
	if !proto.Equal(resp.GetAction(), wantAction) || resp.GetAction().GetAt() == nil {
		t.Errorf("action %v, want %v with the time recorded", resp.GetAction(), wantAction)
	}
	if resp.GetReplayed() || resp.GetFlight().GetPhase() != rolloutpb.Phase_PHASE_PROMOTING {
		t.Errorf("replayed %v, phase %s; want a first call and PROMOTING", resp.GetReplayed(), resp.GetFlight().GetPhase())
	}

	// Without full, one step.
	if _, err := f.client.Promote(f.ctx, &rolloutpb.PromoteRequest{Namespace: "prod", Name: "cart", RequestId: "r-step"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("promoting a flight with no canary: %v, want FailedPrecondition", err)
	}
	if calls := f.backend.Calls(); calls[len(calls)-1].Action.Kind != v1alpha1.ActionPromote {
		t.Errorf("promote without full reached the backend as %s", calls[len(calls)-1].Action.Kind)
	}
}

func TestAReplayedRequestIDIsAnsweredAsRecorded(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	req := &rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "pipeline-4211", Reason: "smoke tests passed"}
	first, err := f.client.Promote(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.client.Promote(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.GetReplayed() || !second.GetReplayed() {
		t.Errorf("replayed: first %v, second %v; want false, true", first.GetReplayed(), second.GetReplayed())
	}
	if !proto.Equal(first.GetFlight(), second.GetFlight()) {
		t.Errorf("the replay answered another flight:\n%v\nwant\n%v", second.GetFlight(), first.GetFlight())
	}
	if first.GetFlight().GetCanaryWeight() != 70 {
		t.Errorf("weight %d after one promote from 40, want 70", first.GetFlight().GetCanaryWeight())
	}
	calls := f.backend.Calls()
	if len(calls) != 2 || calls[0].Replayed || !calls[1].Replayed || calls[1].Action.RequestID != "pipeline-4211" {
		t.Errorf("backend calls %+v: want the request id passed twice, taken once", calls)
	}
}

func TestSetImage(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	req := &rolloutpb.SetImageRequest{Namespace: "prod", Name: "shop", RequestId: "r-img", Reason: "release 1.4.2", Container: "app", Image: "registry.example/shop:1.4.2"}
	resp, err := f.client.SetImage(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetChanged() || resp.GetPreviousImage() != "registry.example/shop:1" || resp.GetRevision() == "" || resp.GetReplayed() {
		t.Errorf("first call: %v", resp)
	}
	if a := resp.GetAction(); a.GetKind() != rolloutpb.ActionKind_ACTION_KIND_SET_IMAGE || a.GetRevision() != resp.GetRevision() || a.GetBy() != "api:"+apitest.User {
		t.Errorf("action %v", a)
	}
	if resp.GetFlight().GetName() != "shop" {
		t.Errorf("no flight in the response: %v", resp)
	}
	replay, err := f.client.SetImage(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !replay.GetReplayed() || replay.GetRevision() != resp.GetRevision() || !replay.GetChanged() {
		t.Errorf("replay: %v, want the first outcome, replayed", replay)
	}
	req.RequestId = "r-img-2"
	again, err := f.client.SetImage(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetChanged() || again.GetRevision() != resp.GetRevision() || again.GetReplayed() {
		t.Errorf("the same image again: %v, want unchanged, same revision", again)
	}
	if calls := f.backend.Calls(); len(calls) != 3 || calls[0].Image.By != "api:"+apitest.User || calls[0].Image.Reason != "release 1.4.2" {
		t.Errorf("backend calls %+v", calls)
	}
}

func TestReads(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	shop, err := f.client.Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if fl := shop.GetFlight(); fl.GetCanaryWeight() != 40 || fl.GetCanaryRevision() != "rev-b" || fl.GetLastDecision().GetVerdict() != rolloutpb.Verdict_VERDICT_ADVANCE || fl.GetPolicy() != "standard" {
		t.Errorf("Get: %v", fl)
	}
	_, err = f.client.Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "ghost"})
	wantStatus(t, err, codes.NotFound, "flight prod/ghost not found")

	list, err := f.client.List(f.ctx, &rolloutpb.ListRequest{Namespace: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(list.GetFlights()); got != "cart,shop" || list.GetResourceVersion() == "" || list.GetNextPageToken() != "" {
		t.Errorf("List: %s at %q, next %q", got, list.GetResourceVersion(), list.GetNextPageToken())
	}
	bySelector, err := f.client.List(f.ctx, &rolloutpb.ListRequest{Namespace: "prod", LabelSelector: "team in (shop, web)"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(bySelector.GetFlights()); got != "shop" {
		t.Errorf("List team in (shop, web): %s", got)
	}
	_, err = f.client.List(f.ctx, &rolloutpb.ListRequest{Namespace: "prod", LabelSelector: "team in (("})
	wantStatus(t, err, codes.InvalidArgument, "label_selector")

	// Pages of one.
	var paged []string
	token := ""
	for range 3 {
		page, err := f.client.List(f.ctx, &rolloutpb.ListRequest{Namespace: "prod", PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, names(page.GetFlights()))
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if got := strings.Join(paged, "|"); got != "cart|shop" {
		t.Errorf("pages %s, want cart|shop", got)
	}
	_, err = f.client.List(f.ctx, &rolloutpb.ListRequest{Namespace: "prod", PageToken: "not-ours"})
	wantStatus(t, err, codes.InvalidArgument, "page_token")

	explain, err := f.client.Explain(f.ctx, &rolloutpb.ExplainRequest{Namespace: "prod", Name: "shop", Revision: "rev-b"})
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, d := range explain.GetDecisions() {
		verdicts = append(verdicts, d.GetVerdict().String())
	}
	if got := strings.Join(verdicts, ","); got != "VERDICT_START,VERDICT_ADVANCE" {
		t.Errorf("Explain rev-b: %s", got)
	}
	all, err := f.client.Explain(f.ctx, &rolloutpb.ExplainRequest{Namespace: "prod", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all.GetDecisions()); n != 3 {
		t.Errorf("Explain: %d decisions, want 3", n)
	}
}

func names(fs []*rolloutpb.Flight) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetName())
	}
	return strings.Join(out, ",")
}

func TestRecordedActionTime(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	resp, err := f.client.Pause(f.ctx, &rolloutpb.PauseRequest{Namespace: "prod", Name: "shop", RequestId: "r-p", Reason: "investigating"})
	if err != nil {
		t.Fatal(err)
	}
	want := metav1.NewTime(resp.GetFlight().GetLastAction().GetAt().AsTime())
	if got := resp.GetAction().GetAt(); got == nil || !got.AsTime().Equal(want.Time) {
		t.Errorf("action at %v, want the flight's record %v", got, want)
	}
}
