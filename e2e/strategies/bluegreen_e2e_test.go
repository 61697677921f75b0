//go:build e2e

package strategies_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/e2e/slackd"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
	"github.com/fledgehq/fledge/traffic"
)

// previewHeader reaches the new revision during a blue/green preview.
const previewHeader = "x-fledge-preview"

// blueGreenPolicies: bg judges the preview (its error rate against
// stable's, and its success rate) after 8 s, switches, judges the new
// revision every 4 s for 8 s after the switch, and keeps the previous one
// at full size for 12 s; manual is the same with a preview that can never
// bring enough requests to judge, so only a person switches.
const blueGreenPolicies = `
slack: {secret: fledge-slack}
policies:
  bg:
    strategy: blueGreen
    interval: 4s
    minInterval: 1s
    lookInterval: 2s
    progressDeadline: 1m
    blueGreen:
      preview: {header: ` + previewHeader + `, value: "true"}
      prePromotion: {duration: 8s, minSamples: 20}
      postPromotion: {duration: 8s}
      scaleDownDelay: 12s
    metrics:
    - {name: error-rate, maxIncrease: 0.05}
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
  tight:
    strategy: blueGreen
    interval: 4s
    minInterval: 1s
    progressDeadline: 20s
    blueGreen:
      preview: {header: ` + previewHeader + `, value: "true"}
    metrics:
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
  manual:
    strategy: blueGreen
    interval: 4s
    minInterval: 1s
    progressDeadline: 1m
    blueGreen:
      preview: {header: ` + previewHeader + `, value: "true"}
      prePromotion: {duration: 4s, minSamples: 1000000}
      postPromotion: {duration: 20s}
    metrics:
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
`

// stableWatch follows shop's Deployment (the previous revision during a
// blue/green rollout) until stopped: the fewest replicas it asked for and
// had available, and whether it was ever unpaused or ran pods of another
// template.
type stableWatch struct {
	mu                    sync.Mutex
	minSpec, minAvailable int32
	unpaused, rolled      bool
	reads                 int
	stop                  func()
}

func watchStable(t *testing.T, sb *sandbox.Sandbox, ns, revision string) *stableWatch {
	w := &stableWatch{minSpec: 1 << 30, minAvailable: 1 << 30}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{}); err == nil {
				w.see(d, revision)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	w.stop = func() { cancel(); <-done }
	t.Cleanup(w.stop)
	return w
}

func (w *stableWatch) see(d *appsv1.Deployment, revision string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	w.minSpec = min(w.minSpec, ptr.Deref(d.Spec.Replicas, 1))
	w.minAvailable = min(w.minAvailable, d.Status.AvailableReplicas)
	w.unpaused = w.unpaused || !d.Spec.Paused
	// Rolled: pods of a template other than the previous revision's (the
	// new template sits in the paused Deployment's spec from the start).
	w.rolled = w.rolled || fledgeengine.TemplateHash(d.Spec.Template) != revision && d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas > 0
}

// TestABlueGreenRolloutIsPreviewedSwitchedJudgedAndPromoted: (1) the new
// revision comes up at the stable Deployment's size, and during the
// preview only requests with the preview header reach it; (2) its checks
// (a comparison with stable among them) judge the preview, then all
// traffic switches at once; (3) after the switch every request reaches
// it while the paused Deployment keeps the previous revision at full size
// for the scale-down delay; (4) then the Deployment is rolled to it and
// the rollout ends settled, with the switch and the promotion in the
// decision log.
func TestABlueGreenRolloutIsPreviewedSwitchedJudgedAndPromoted(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, blueGreenPolicies)
	stable := shopApp(t, sb, ns, "bg", 20, nil, mesh.Segment{Share: 0.3, Headers: map[string]string{previewHeader: "true"}})
	rec := record(t, sb, ns, previewHeader)
	watch := watchStable(t, sb, ns, stable)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step == 0
	})
	if f.Status.BlueGreen == nil || len(f.Status.Steps) != 2 || f.Status.CanaryWeight != 0 || !strings.Contains(f.Status.Message, "preview") {
		t.Fatalf("at the preview: blueGreen %+v, steps %v, weight %d (%s); want the blue/green plan at 0%%", f.Status.BlueGreen, f.Status.Steps, f.Status.CanaryWeight, f.Status.Message)
	}
	canary, err := sb.Kube.AppsV1().Deployments(ns).Get(context.Background(), "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(canary.Spec.Replicas, 1); got != 2 || canary.Status.AvailableReplicas != 2 {
		t.Errorf("the new revision runs %d replicas (%d available), want the stable Deployment's 2", got, canary.Status.AvailableReplicas)
	}
	time.Sleep(500 * time.Millisecond) // the emulator's routing debounce
	var preview, previewNew, others, othersNew int
	for _, r := range rec.window(2 * time.Second) {
		switch {
		case r.preview:
			preview++
			if r.canary {
				previewNew++
			}
		default:
			others++
			if r.canary {
				othersNew++
			}
		}
	}
	t.Logf("preview: %d of %d preview requests and %d of %d others reached the new revision", previewNew, preview, othersNew, others)
	if preview == 0 || previewNew != preview || othersNew != 0 {
		t.Errorf("preview: %d of %d preview requests and %d of %d others reached the new revision; want all preview requests and no other", previewNew, preview, othersNew, others)
	}

	f = waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Step == 1 || f.Status.Phase.Terminal()
	})
	if f.Status.Step != 1 || f.Status.CanaryWeight != 100 || !strings.Contains(f.Status.Message, "switched: all traffic on revision "+rev) {
		t.Fatalf("phase %s step %d at %d%% (%s); want switched", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight, f.Status.Message)
	}
	time.Sleep(500 * time.Millisecond)
	all, onNew := 0, 0
	for _, r := range rec.window(2 * time.Second) {
		all++
		if r.canary {
			onNew++
		}
	}
	t.Logf("after the switch: %d of %d requests reached the new revision", onNew, all)
	if all == 0 || onNew != all {
		t.Errorf("after the switch: %d of %d requests reached the new revision, want all", onNew, all)
	}
	// Still switched, judged: the previous revision is kept.
	if f := getOrFail(t, sb, ns); f.Status.Phase == v1alpha1.PhaseProgressing && !strings.Contains(f.Status.Message, "switched") && !strings.Contains(f.Status.Message, "kept at full size") {
		t.Errorf("after the switch: %q does not say the previous revision is kept", f.Status.Message)
	}

	f = waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase.Terminal() })
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("phase %s, stable %s (%s); want Succeeded with %s", f.Status.Phase, f.Status.StableRevision, f.Status.Message, rev)
	}
	switched := decisionsOf(f, rev, v1alpha1.VerdictAdvance)
	promoted := decisionsOf(f, rev, v1alpha1.VerdictPromote)
	if len(switched) == 0 || len(promoted) != 1 || !strings.Contains(switched[len(switched)-1].Message, "switched") {
		t.Fatalf("decision log: switch %+v, promotion %+v; want both", switched, promoted)
	}
	kept := promoted[0].At.Sub(switched[len(switched)-1].At.Time)
	t.Logf("the previous revision was kept at full size for %s after the switch", kept)
	if kept < 11*time.Second { // the scale-down delay, to the second the log keeps
		t.Errorf("promoted %s after the switch, before the 12s scale-down delay", kept)
	}
	// The previous revision kept its full size until the promotion, and
	// the Deployment kept asking for it while it rolled.
	watch.mu.Lock()
	t.Logf("the stable Deployment over %d reads: at least %d replicas asked, %d available", watch.reads, watch.minSpec, watch.minAvailable)
	if watch.reads == 0 || watch.minSpec != 2 {
		t.Errorf("the stable Deployment asked for as few as %d replicas, want 2 throughout", watch.minSpec)
	}
	watch.mu.Unlock()
	assertSettled(t, sb, ns)
	// Slack heard of the switch, with what was kept, and of the promotion.
	app := ns + "/shop"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := sb.Slack.WaitFor(ctx, func(m slackd.Message) bool {
		return strings.HasPrefix(m.Text, "Switched "+app+" to example.com/shop:v2")
	})
	if err != nil || !strings.Contains(msg.Text, "kept at full size") {
		t.Errorf("Slack's switch message %q (%v), want one saying what is kept at full size", msg.Text, err)
	}
	if _, err := sb.Slack.WaitFor(ctx, func(m slackd.Message) bool { return strings.HasPrefix(m.Text, "Promoted "+app) }); err != nil {
		t.Errorf("no promotion in Slack: %v", err)
	}
}

// TestABlueGreenRevisionFailingAfterTheSwitchIsSwitchedBackAtOnce: a person
// switches to a revision its preview could not judge; after the switch it
// fails half of its requests, and the first round after the switch sends
// every request back to the previous revision, whose pods were never
// scaled down, unpaused or rolled. (The first round sees 40-60 requests:
// at 20% failures it would pass >= 95% in a few runs in a thousand.)
func TestABlueGreenRevisionFailingAfterTheSwitchIsSwitchedBackAtOnce(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, blueGreenPolicies)
	stable := shopApp(t, sb, ns, "manual", 20, nil)
	rec := record(t, sb, ns, previewHeader)
	watch := watchStable(t, sb, ns, stable)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.5"})
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step == 0
	})
	annotate(t, sb, ns, map[string]string{rollout.AnnotationAction: "promote", rollout.AnnotationActionReason: "preview checked by hand"})
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Step == 1 || f.Status.Phase.Terminal() })
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase.Terminal() })
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.StableRevision != stable {
		t.Fatalf("phase %s, stable %s (%s); want RolledBack to %s", f.Status.Phase, f.Status.StableRevision, f.Status.Message, stable)
	}
	if !strings.Contains(f.Status.Message, "after the switch: success-rate fail") {
		t.Errorf("rolled back for %q, want the success rate after the switch", f.Status.Message)
	}
	// Within one round: the switch, then at once the failed round that
	// rolled back, and nothing judged in between.
	var after []v1alpha1.DecisionRecord
	switchedAt := -1
	for i, d := range f.Status.Decisions {
		if d.Revision != rev {
			continue
		}
		if d.Verdict == v1alpha1.VerdictManual || d.Verdict == v1alpha1.VerdictAdvance {
			switchedAt = i
			after = nil
			continue
		}
		if switchedAt >= 0 {
			after = append(after, d)
		}
	}
	if len(after) != 1 || after[0].Verdict != v1alpha1.VerdictRollback {
		t.Errorf("after the switch the log holds %+v, want one record: the rollback of the first round", after)
	}
	time.Sleep(500 * time.Millisecond)
	all, onNew := 0, 0
	for _, r := range rec.window(2 * time.Second) {
		all++
		if r.canary {
			onNew++
		}
	}
	if all == 0 || onNew != 0 {
		t.Errorf("after switching back: %d of %d requests reached the failed revision, want none", onNew, all)
	}
	watch.stop()
	watch.mu.Lock()
	defer watch.mu.Unlock()
	t.Logf("the stable Deployment over %d reads: at least %d replicas asked, %d available; unpaused %t, rolled %t", watch.reads, watch.minSpec, watch.minAvailable, watch.unpaused, watch.rolled)
	if watch.reads == 0 || watch.minSpec != 2 || watch.minAvailable != 2 || watch.unpaused || watch.rolled {
		t.Errorf("the previous revision's Deployment: at least %d replicas asked, %d available, unpaused %t, rolled %t; want 2 and 2, never unpaused or rolled", watch.minSpec, watch.minAvailable, watch.unpaused, watch.rolled)
	}
	assertSettled(t, sb, ns)
	if w := routingOf(t, sb, ns); w != (traffic.Weights{Stable: 100}) {
		t.Errorf("routing %+v, want all on stable", w)
	}
}

func getOrFail(t *testing.T, sb *sandbox.Sandbox, ns string) *v1alpha1.Flight {
	t.Helper()
	f, err := getFlight(context.Background(), sb, ns, "shop")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestABlueGreenRevisionWithoutQuotaHoldsSayingWhyAndIsRolledBack: the
// namespace's quota leaves room for one more pod, not for the new
// revision's two. The Flight holds at once naming the quota, no request
// ever reaches the half-started revision, and at the progress deadline it
// is rolled back with the reason, its one pod removed.
func TestABlueGreenRevisionWithoutQuotaHoldsSayingWhyAndIsRolledBack(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, blueGreenPolicies)
	stable := shopApp(t, sb, ns, "tight", 20, nil)
	ctx := context.Background()
	_, err := sb.Kube.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("3")}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The quota controller fills in what it allows before it is enforced.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		q, err := sb.Kube.CoreV1().ResourceQuotas(ns).Get(ctx, "pods", metav1.GetOptions{})
		return err == nil && len(q.Status.Hard) > 0, nil
	}); err != nil {
		t.Fatalf("the quota's status was never filled in: %v", err)
	}
	rec := record(t, sb, ns, previewHeader)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldCanaryNotReady || f.Status.Phase.Terminal())
	})
	if h := f.Status.Hold; h == nil || !strings.Contains(h.Message, "exceeded quota") {
		t.Fatalf("hold %+v (phase %s), want one naming the quota", h, f.Status.Phase)
	}
	t.Logf("held: %s", f.Status.Hold.Message)
	if w := routingOf(t, sb, ns); w != (traffic.Weights{Stable: 100}) {
		t.Errorf("routing %+v while the new revision cannot come up, want all on stable and no preview route", w)
	}
	reached := 0
	for _, r := range rec.window(time.Second) {
		if r.canary {
			reached++
		}
	}
	if reached != 0 {
		t.Errorf("%d requests reached the half-started revision, want none", reached)
	}
	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase.Terminal() })
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.StableRevision != stable || !strings.Contains(f.Status.Message, "exceeded quota") {
		t.Fatalf("phase %s, stable %s (%s); want RolledBack naming the quota", f.Status.Phase, f.Status.StableRevision, f.Status.Message)
	}
	assertSettled(t, sb, ns)
}

// TestAPreviewRouteCollidingWithATeamsRouteHoldsAndChangesNothing: the
// team's VirtualService already routes on the preview header in the route
// fledge splits. The new revision's preview cannot be ANDed in: the Flight
// holds naming the header, no request reaches the new revision, and the
// team's VirtualService stays as they wrote it.
func TestAPreviewRouteCollidingWithATeamsRouteHoldsAndChangesNothing(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, blueGreenPolicies)
	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })
	written := &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-routes", Namespace: ns},
		Spec: networkingv1.VirtualService{
			Hosts: []string{"shop"},
			Http: []*networkingv1.HTTPRoute{{
				Name: "primary",
				Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
					previewHeader: {MatchType: &networkingv1.StringMatch_Prefix{Prefix: ""}},
				}}, {}},
				Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "shop"}}},
			}},
		},
	}
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, written, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stored := sb.StoredVirtualService(t, ns, "shop-routes")
	sb.CreateApp(t, ns, appOf("shop", map[string]string{rollout.AnnotationRollout: "manual", rollout.AnnotationVirtualService: "shop-routes/primary"}, nil))
	sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: 20, Users: 300,
		Segments: []mesh.Segment{{Share: 0.3, Headers: map[string]string{previewHeader: "true"}}}})
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	rec := record(t, sb, ns, previewHeader)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Hold != nil && strings.Contains(f.Status.Hold.Message, previewHeader)
	})
	t.Logf("held: %s: %s", f.Status.Hold.Reason, f.Status.Hold.Message)
	if f.Status.CanaryWeight != 0 || f.Status.Phase.Terminal() {
		t.Errorf("phase %s at %d%%, want held before any traffic", f.Status.Phase, f.Status.CanaryWeight)
	}
	reached := 0
	for _, r := range rec.window(2 * time.Second) {
		if r.canary {
			reached++
		}
	}
	if reached != 0 {
		t.Errorf("%d requests reached the new revision, want none", reached)
	}
	if diff := cmp.Diff(stored, sb.StoredVirtualService(t, ns, "shop-routes")); diff != "" {
		t.Errorf("the team's VirtualService changed (-as written +now):\n%s", diff)
	}
}
