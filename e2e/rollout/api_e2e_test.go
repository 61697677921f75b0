//go:build e2e

package rollout_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// These tests drive fledge as a CI pipeline does: through its gRPC API,
// served by the engine process over TLS, with ServiceAccount tokens whose
// RBAC decides what they may do, and through fledgectl as a binary, whose
// exit code is what a pipeline branches on. Their harness: api_env (the
// engine serving the API, its callers), api_fledgectl (the CLI as a
// process), api_outage (an API server fledge cannot reach).

// slowPolicies has a step that lasts a minute: whatever a test sees
// happen within it is the doing of the call it made, not of the analysis.
const slowPolicies = `
policies:
  slow:
    steps: [20, 50]
    interval: 60s
    minInterval: 1s
    failureLimit: 2
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 50}
`

// A pipeline deploys with set-image and waits on the revision it printed:
// wait exits 0 once it is promoted, and 2 when a faulty revision is
// rolled back. A watch started before shows every step.
func TestFledgectlSetImageAndWaitTellAPipelineHowItsRevisionEnded(t *testing.T) {
	a := startAPIEngine(t, fastPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "fast", 200)
	ctl := a.fledgectl(t, a.pipeline)

	watch := ctl.start("watch", "shop")
	watch.waitOutput(t, ns+"/shop Idle") // the current state first: changes come after it

	set := ctl.run("set-image", "shop", "shop=example.com/shop:v2", "--reason", "release v2")
	rev := strings.TrimSpace(set.stdout)
	if set.code != 0 || rev == "" || strings.ContainsAny(rev, " \n") {
		t.Fatalf("set-image: exit %d, stdout %q: want 0 and the revision alone", set.code, set.stdout)
	}
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fledgeengine.TemplateHash(d.Spec.Template); got != rev || d.Spec.Template.Spec.Containers[0].Image != "example.com/shop:v2" {
		t.Errorf("the Deployment's template is revision %s with image %s; set-image printed %s for example.com/shop:v2",
			got, d.Spec.Template.Spec.Containers[0].Image, rev)
	}
	if cause := d.Annotations["kubernetes.io/change-cause"]; !strings.Contains(cause, apiUser(ns, "pipeline")) || !strings.Contains(cause, "release v2") {
		t.Errorf("change-cause %q does not say who set the image and why", cause)
	}

	w := ctl.run("wait", "shop", "--revision", rev, "--timeout", "2m")
	if w.code != 0 || !strings.Contains(w.stdout, "revision "+rev+" promoted") {
		t.Fatalf("wait --revision %s: exit %d, want 0 (promoted)", rev, w.code)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("wait exited 0, but the Flight is %s with stable revision %s", f.Status.Phase, f.Status.StableRevision)
	}
	// What a pipeline reads next: what runs now.
	got, err := a.client(t).Get(withToken(callCtx(t), a.reader), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	if err != nil {
		t.Fatalf("Get after the promotion: %v", err)
	}
	if stable := got.GetFlight().GetStableImages(); len(stable) != 1 {
		t.Errorf("after the promotion the API lists stable images %v, want one (container shop)", stable)
	} else {
		if stable[0].GetImage() != "example.com/shop:v2" {
			t.Errorf("after the promotion the API says the stable revision runs %s, want example.com/shop:v2 (what the Deployment runs)", stable[0].GetImage())
		}
		if stable[0].GetContainer() != "shop" {
			t.Errorf("the stable image %v does not name its container, want shop", stable[0])
		}
	}

	// A faulty revision. Its behaviour is a pod template annotation, which
	// set-image cannot set: the annotation alone is a revision, rolled
	// back first; then set-image makes a faulty revision of its own.
	bad := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.2"})
	waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == bad
	})
	set = ctl.run("set-image", "shop", "shop=example.com/shop:v3")
	rev3 := strings.TrimSpace(set.stdout)
	if set.code != 0 || rev3 == "" || rev3 == bad {
		t.Fatalf("set-image v3: exit %d, revision %q (the rejected one is %s)", set.code, rev3, bad)
	}
	w = ctl.run("wait", "shop", "--revision", rev3, "--timeout", "2m")
	if w.code != 2 || !strings.Contains(w.stderr, "revision "+rev3+" rolled back") {
		t.Errorf("wait --revision %s for a faulty revision: exit %d, want 2 (rolled back)", rev3, w.code)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.RejectedRevision != rev3 {
		t.Errorf("wait exited 2, but the Flight is %s with rejected revision %s", f.Status.Phase, f.Status.RejectedRevision)
	}

	r := watch.interrupt(t)
	t.Logf("fledgectl watch shop:\n%s", r.stdout)
	if r.code != 0 {
		t.Errorf("watch exited %d after an interrupt, want 0", r.code)
	}
	for _, want := range [][]string{
		{"Progressing", "step 1/2", " 20%"},
		{"Progressing", "step 2/2", " 50%"},
		{"Succeeded"},
		{"RolledBack", "success-rate"},
	} {
		if !lineWith(r.stdout, want...) {
			t.Errorf("no line of the watch shows %q:\n%s", want, r.stdout)
		}
	}
	assertSettled(t, sb, ns)
}

// promote --full and abort take effect at once, whatever the steps'
// interval, and the Flight and the Deployment's Events say who did it and
// why.
func TestFledgectlPromoteFullAndAbortActAtOnceAndSayWhoAndWhy(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	ctl := a.fledgectl(t, a.pipeline)

	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	if p := ctl.run("promote", "shop", "--full", "--reason", "smoke tests passed"); p.code != 0 {
		t.Fatalf("promote --full: exit %d", p.code)
	}
	// A step lasts a minute: promoted within it is the call's doing.
	f := waitFlight(t, sb, ns, "shop", 50*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if got := verdicts(f, rev); !cmp.Equal(got, want) {
		t.Errorf("decision log of %s: %v, want %v (no step judged)", rev, got, want)
	}
	if la := f.Status.LastAction; la == nil || la.Kind != v1alpha1.ActionPromoteFull || la.By != apiUser(ns, "pipeline") || la.Reason != "smoke tests passed" {
		t.Errorf("last action %+v, want promote-full by %s for \"smoke tests passed\"", la, apiUser(ns, "pipeline"))
	}
	assertSettled(t, sb, ns)

	rev3 := startCanary(t, sb, ns, "example.com/shop:v3")
	ab := ctl.run("abort", "shop", "--reason", "bad build")
	if ab.code != 0 || !strings.Contains(ab.stdout, "RollingBack") && !strings.Contains(ab.stdout, "Aborted") {
		t.Fatalf("abort: exit %d (%s), want 0 and the Flight rolling back (or aborted)", ab.code, ab.stdout)
	}
	// The answer comes once the decision is written: all traffic is being
	// sent to stable, and the Flight is Aborted once it reads back so.
	f = mustFlight(t, sb, ns)
	if rb := f.Status.RollingBack; f.Status.Phase != v1alpha1.PhaseAborted && (f.Status.Phase != v1alpha1.PhaseRollingBack || rb == nil || rb.Phase != v1alpha1.PhaseAborted || rb.Revision != rev3) {
		t.Errorf("after abort answered: phase %s, rolling back %+v; want RollingBack towards Aborted (or Aborted), of %s", f.Status.Phase, rb, rev3)
	}
	f = waitFlight(t, sb, ns, "shop", 20*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseAborted })
	if f.Status.RejectedRevision != rev3 {
		t.Errorf("aborted: rejected %q, want %s", f.Status.RejectedRevision, rev3)
	}
	la := f.Status.LastAction
	if la == nil || la.Kind != v1alpha1.ActionAbort || la.By != apiUser(ns, "pipeline") || la.Reason != "bad build" || !strings.HasPrefix(la.RequestID, "fledgectl-") {
		t.Errorf("last action %+v, want abort by %s for \"bad build\" with fledgectl's request id", la, apiUser(ns, "pipeline"))
	}
	waitWarning(t, sb, ns, "shop", rollout.EventAborted, "bad build")
	if w := ctl.run("wait", "shop", "--revision", rev3, "--timeout", "30s"); w.code != 3 || !strings.Contains(w.stderr, "bad build") {
		t.Errorf("wait --revision %s after the abort: exit %d, want 3 (aborted) naming the reason", rev3, w.code)
	}
	assertSettled(t, sb, ns)
}

// Who may do what is the Deployment's RBAC: a reader may look, not act,
// and a caller without valid credentials may do neither. Refused calls
// change nothing.
func TestAPIRefusesCallersWithoutThePermissionOrCredentials(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	before := mustFlight(t, sb, ns)
	c := a.client(t)
	reader := withToken(callCtx(t), a.reader)

	got, err := c.Get(reader, &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	if err != nil {
		t.Fatalf("the reader's Get: %v", err)
	}
	if got.GetFlight().GetCanaryRevision() != rev || got.GetFlight().GetPhase() != rolloutpb.Phase_PHASE_PROGRESSING {
		t.Errorf("the reader got %v, want the canary %s progressing", got.GetFlight(), rev)
	}
	readerUser := "system:serviceaccount:" + ns + ":reader"
	_, err = c.Promote(reader, &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "reader-promote", Reason: "why not", Full: true})
	wantStatus(t, "the reader's Promote", err, codes.PermissionDenied, readerUser, "patch", "shop")
	_, err = c.Abort(reader, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: "reader-abort", Reason: "why not"})
	wantStatus(t, "the reader's Abort", err, codes.PermissionDenied, readerUser, "patch", "shop")
	_, err = c.SetImage(reader, &rolloutpb.SetImageRequest{Namespace: ns, Name: "shop", RequestId: "reader-image", Container: "shop", Image: "example.com/shop:v9"})
	wantStatus(t, "the reader's SetImage", err, codes.PermissionDenied, readerUser, "patch")
	if r := a.fledgectl(t, a.reader).run("abort", "shop", "--reason", "why not"); r.code != 1 || !strings.Contains(r.stderr, "cannot patch") {
		t.Errorf("fledgectl abort as the reader: exit %d, want 1 saying it cannot patch", r.code)
	}

	none := callCtx(t)
	_, err = c.Get(none, &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	wantStatus(t, "Get without a token", err, codes.Unauthenticated)
	_, err = c.Promote(none, &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "anonymous", Full: true})
	wantStatus(t, "Promote without a token", err, codes.Unauthenticated)
	garbage := withToken(callCtx(t), "garbage.not-a-token")
	_, err = c.Get(garbage, &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	wantStatus(t, "Get with a garbage token", err, codes.Unauthenticated)
	_, err = c.Abort(garbage, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: "garbage", Reason: "x"})
	wantStatus(t, "Abort with a garbage token", err, codes.Unauthenticated)
	if r := a.fledgectl(t, "garbage.not-a-token").run("status", "shop"); r.code != 1 || !strings.Contains(r.stderr, "refused the token from $FLEDGE_TOKEN") {
		t.Errorf("fledgectl status with a garbage token: exit %d, want 1 saying the token from $FLEDGE_TOKEN was refused", r.code)
	}

	after := mustFlight(t, sb, ns)
	if diff := cmp.Diff(stateOf(before), stateOf(after)); diff != "" {
		t.Errorf("refused calls changed the Flight (-before +after):\n%s", diff)
	}
	// Refusals are counted, by method and code.
	counters := scrapeCounters(t, a.engine.MetricsAddr)
	for key, want := range map[string]float64{
		`fledge_api_requests_total{code="PermissionDenied",method="/fledge.v1.Rollouts/Promote"}`: 1,
		`fledge_api_requests_total{code="PermissionDenied",method="/fledge.v1.Rollouts/Abort"}`:   2,
		`fledge_api_requests_total{code="Unauthenticated",method="/fledge.v1.Rollouts/Get"}`:      3,
	} {
		if counters[key] != want {
			t.Errorf("%s = %v, want %v", key, counters[key], want)
		}
	}
	if image := shopImage(t, sb, ns); image != "example.com/shop:v2" {
		t.Errorf("after a refused SetImage the Deployment's image is %s, want example.com/shop:v2", image)
	}
}

// When fledge cannot ask the API server who calls and what they may do,
// it refuses every call with UNAVAILABLE, valid tokens included, and acts
// on none, not even once the API server is back.
func TestAPIRefusesEveryCallAsUnavailableWhileTheAPIServerIsUnreachable(t *testing.T) {
	sb := suite.Get(t)
	target, err := url.Parse(sb.RESTConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, target.Host)
	// Its API server traffic goes through the proxy. Leases long enough to
	// outlast the outage: a leader that gave up would exit, and the test
	// would see a closed port rather than fledge's refusals.
	a := startAPIEngine(t, slowPolicies, "--kubeconfig="+proxiedKubeconfig(t, sb, proxy.addr),
		"--lease-duration=90s", "--renew-deadline=80s", "--retry-period=2s")
	ns := a.ns
	shopApp(t, sb, ns, "slow", 50)
	startCanary(t, sb, ns, "example.com/shop:v2")
	c := a.client(t)
	before := mustFlight(t, sb, ns)
	// The pipeline's token is reviewed (and cached by fledge) now; the
	// fresh one never was, so it needs a TokenReview during the outage.
	fresh := serviceAccountToken(t, sb, ns, "pipeline")
	if _, err := c.Get(withToken(callCtx(t), a.pipeline), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"}); err != nil {
		t.Fatalf("Get before the outage: %v", err)
	}

	proxy.Close()
	// First the cached token (a review is trusted for 30s), so that the
	// refusal is the SubjectAccessReview's.
	_, err = c.Promote(withToken(callCtx(t), a.pipeline), &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "during-outage", Reason: "ship it", Full: true})
	wantStatus(t, "Promote with a reviewed token", err, codes.Unavailable, "cannot verify credentials", "subjectaccessreview")
	_, err = c.Get(withToken(callCtx(t), fresh), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	wantStatus(t, "Get with a token to review", err, codes.Unavailable, "cannot verify credentials", "tokenreview")
	if r := a.fledgectl(t, a.pipeline).run("promote", "shop", "--full", "--request-id", "ctl-during-outage"); r.code != 5 {
		t.Errorf("fledgectl promote during the outage: exit %d, want 5 (unavailable)", r.code)
	}

	proxy.Reopen()
	var last error
	err = wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, last = c.Get(withToken(ctx, fresh), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("the API never served again after the outage: %v", last)
	}
	// Nothing was queued to be taken once fledge could write again.
	for range 10 {
		after := mustFlight(t, sb, ns)
		if diff := cmp.Diff(stateOf(before), stateOf(after)); diff != "" {
			t.Fatalf("calls refused during the outage changed the Flight (-before +after):\n%s", diff)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Bad calls get the code that says what is wrong, and a promote retried
// with its request id is answered, not taken, again.
func TestAPIAnswersBadCallsWithTheirCodeAndTakesARetriedPromoteOnce(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	c := a.client(t)
	ctx := withToken(callCtx(t), a.pipeline)

	_, err := c.Get(ctx, &rolloutpb.GetRequest{Namespace: ns, Name: "ghost"})
	wantStatus(t, "Get of a Deployment that is not opted in", err, codes.NotFound, ns+"/ghost")
	_, err = c.Promote(ctx, &rolloutpb.PromoteRequest{Namespace: ns, Name: "ghost", RequestId: "ghost-1", Reason: "x"})
	wantStatus(t, "Promote of a Deployment that is not opted in", err, codes.NotFound, ns+"/ghost")
	_, err = c.SetImage(ctx, &rolloutpb.SetImageRequest{Namespace: ns, Name: "shop", RequestId: "bad-image", Container: "shop", Image: "UPPER CASE:bad"})
	wantStatus(t, "SetImage of a malformed image", err, codes.InvalidArgument, "image", "UPPER CASE:bad")
	_, err = c.Abort(ctx, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: "no-reason"})
	wantStatus(t, "Abort without a reason", err, codes.InvalidArgument, "reason")
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.LastAction != nil {
		t.Fatalf("after invalid calls: %s, last action %+v; want the canary progressing, no action recorded", f.Status.Phase, f.Status.LastAction)
	}
	if image := shopImage(t, sb, ns); image != "example.com/shop:v2" {
		t.Errorf("after a malformed SetImage the Deployment's image is %s, want example.com/shop:v2", image)
	}

	req := &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "pipeline-4211-promote", Reason: "step looks fine"}
	first, err := c.Promote(ctx, req)
	if err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if first.GetReplayed() || first.GetFlight().GetCanaryWeight() != 50 {
		t.Errorf("first Promote: replayed %v, canary at %d%%; want a new action that passed the 20%% step", first.GetReplayed(), first.GetFlight().GetCanaryWeight())
	}
	again, err := c.Promote(ctx, req)
	if err != nil {
		t.Fatalf("Promote again with the same request id: %v", err)
	}
	if !again.GetReplayed() || again.GetAction().GetRequestId() != req.RequestId || again.GetFlight().GetPhase() != rolloutpb.Phase_PHASE_PROGRESSING || again.GetFlight().GetCanaryWeight() != 50 {
		t.Errorf("Promote again: replayed %v, action %v, flight %s at %d%%; want replayed, still at 50%%",
			again.GetReplayed(), again.GetAction(), again.GetFlight().GetPhase(), again.GetFlight().GetCanaryWeight())
	}
	// The same request id for another call is refused, and does nothing.
	_, err = c.Abort(ctx, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: req.RequestId, Reason: "oops"})
	wantStatus(t, "Abort reusing a promote's request id", err, codes.InvalidArgument, req.RequestId)

	f := mustFlight(t, sb, ns)
	var promotes []string
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v1alpha1.VerdictManual {
			promotes = append(promotes, d.Message)
		}
	}
	if len(promotes) != 1 || !strings.Contains(promotes[0], apiUser(ns, "pipeline")) || !strings.Contains(promotes[0], "step looks fine") {
		t.Errorf("manual decisions of %s: %q, want one step passed by %s", rev, promotes, apiUser(ns, "pipeline"))
	}
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 50 || f.Status.LastAction == nil || f.Status.LastAction.Kind != v1alpha1.ActionPromote {
		t.Errorf("after the replay: phase %s at %d%%, last action %+v; want progressing at 50%% after one promote", f.Status.Phase, f.Status.CanaryWeight, f.Status.LastAction)
	}
}

// Pause holds a canary at its weight, resume lets it go on, and retry
// canaries an aborted revision again, each answered once its decision is
// written.
func TestFledgectlPauseResumeAndRetry(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	ctl := a.fledgectl(t, a.pipeline)

	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	if r := ctl.run("pause", "shop", "--reason", "looking at a dashboard"); r.code != 0 {
		t.Fatalf("pause: exit %d: %s", r.code, r.stderr)
	}
	f := mustFlight(t, sb, ns)
	if f.Status.Phase != v1alpha1.PhasePaused || f.Status.CanaryWeight == 0 {
		t.Fatalf("after pause: phase %s at %d%%, want Paused at the step's weight", f.Status.Phase, f.Status.CanaryWeight)
	}
	if r := ctl.run("resume", "shop"); r.code != 0 {
		t.Fatalf("resume: exit %d: %s", r.code, r.stderr)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("after resume: phase %s, want Progressing", f.Status.Phase)
	}
	if r := ctl.run("abort", "shop", "--reason", "flaky dependency"); r.code != 0 {
		t.Fatalf("abort: exit %d: %s", r.code, r.stderr)
	}
	// Aborted once the routing reads back at stable (RollingBack until then).
	if f := waitFlight(t, sb, ns, "shop", 20*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase != v1alpha1.PhaseRollingBack }); f.Status.Phase != v1alpha1.PhaseAborted || f.Status.RejectedRevision != rev {
		t.Fatalf("after abort: phase %s rejected %q", f.Status.Phase, f.Status.RejectedRevision)
	}
	// The Deployment still asks for the aborted revision: retry flies it again.
	if r := ctl.run("retry", "shop", "--reason", "dependency fixed"); r.code != 0 {
		t.Fatalf("retry: exit %d: %s", r.code, r.stderr)
	}
	f = mustFlight(t, sb, ns)
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryRevision != rev || f.Status.RejectedRevision != "" {
		t.Fatalf("after retry: phase %s canary %s rejected %q; want %s in flight again", f.Status.Phase, f.Status.CanaryRevision, f.Status.RejectedRevision, rev)
	}
	// Promoting a canary that is not ready yet is refused, and says so.
	if r := ctl.run("promote", "shop", "--full"); r.code == 0 {
		if f := mustFlight(t, sb, ns); f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.Step < 0 {
			t.Fatalf("promote --full of a canary not yet ready succeeded")
		}
	} else if !strings.Contains(r.stderr, "not ready") {
		t.Fatalf("promote --full refused without saying why: %s", r.stderr)
	}
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Step >= 0 || f.Status.Phase != v1alpha1.PhaseProgressing
	})
	if r := ctl.run("promote", "shop", "--full"); r.code != 0 && mustFlight(t, sb, ns).Status.Phase == v1alpha1.PhaseProgressing {
		t.Fatalf("promote --full: exit %d: %s", r.code, r.stderr)
	}
	waitFlight(t, sb, ns, "shop", 50*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	assertSettled(t, sb, ns)
}
