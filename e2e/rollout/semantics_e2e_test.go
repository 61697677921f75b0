//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
)

// threeStepPolicies has three steps, so that a revision can be caught at
// a middle step (30%) with a step still to go after it.
const threeStepPolicies = `
policies:
  three-steps:
    steps: [10, 30, 60]
    interval: 5s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 30
    - name: latency-p95
      max: 400
      minSamples: 30
`

// A revision replaced mid-flight must not inherit its predecessor's
// progress: the newest template is what will be promoted, so it has to be
// judged from the first step, and the half-judged intermediate revision
// must never reach the stable Deployment.
func TestANewRevisionAppliedAt30PercentRestartsTheCanaryOnIt(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{Policies: threeStepPolicies})
	shopApp(t, sb, ns, "three-steps", 250)

	// Ground truth from both sides of the routing: every version of the
	// VirtualService fledge wrote, and which canary pods the mesh sent
	// requests to under which of those versions.
	timeline := watchCanaryWeights(t, sb, ns, "shop", "shop-canary")
	canaryRequests := recordCanaryRequests(t, sb, ns, "shop-canary")

	began := time.Now()
	v2 := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryRevision == v2 && f.Status.CanaryWeight == 30
	})
	t.Logf("%s reached 30%% after %s", v2, time.Since(began).Round(time.Second))

	replaced := time.Now()
	v3 := setImage(t, sb, ns, "shop", "example.com/shop:v3", nil)
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.CanaryRevision == v3 })
	t.Logf("canary restarted on %s %s after the template changed", v3, time.Since(replaced).Round(100*time.Millisecond))
	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == v3
	})
	t.Logf("%s promoted %s after it replaced %s", v3, time.Since(replaced).Round(time.Second), v2)

	t.Run("the decision log says which revision replaced which", func(t *testing.T) {
		var restarts []v1alpha1.DecisionRecord
		for _, d := range f.Status.Decisions {
			if d.Verdict == v1alpha1.VerdictRestart {
				restarts = append(restarts, d)
			}
		}
		if len(restarts) != 1 {
			t.Fatalf("%d restart verdicts in the decision log, want 1: %+v", len(restarts), f.Status.Decisions)
		}
		r := restarts[0]
		if r.Revision != v3 || !strings.Contains(r.Message, v2) || !strings.Contains(r.Message, v3) {
			t.Errorf("restart verdict for revision %q: %q; want it for %s, naming %s and %s", r.Revision, r.Message, v3, v2, v3)
		}
		// The intermediate revision stopped where it was caught; the newest
		// went through every step from the first. Holds (too few samples
		// in a window) depend on timing, not on the restart: left out.
		moved := func(rev string) []v1alpha1.Verdict {
			return slices.DeleteFunc(verdicts(f, rev), func(v v1alpha1.Verdict) bool { return v == v1alpha1.VerdictHold })
		}
		if got, want := moved(v2), []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance}; !slices.Equal(got, want) {
			t.Errorf("decision log for %s: %v, want %v", v2, got, want)
		}
		want := []v1alpha1.Verdict{v1alpha1.VerdictRestart, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
		if got := moved(v3); !slices.Equal(got, want) {
			t.Errorf("decision log for %s: %v, want %v", v3, got, want)
		}
	})

	t.Run("the canary Deployment runs the newest revision", func(t *testing.T) {
		canary, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rev, image := canary.Annotations[fledgeengine.AnnotationRevision], canary.Spec.Template.Spec.Containers[0].Image; rev != v3 || image != "example.com/shop:v3" {
			t.Errorf("canary Deployment: revision %q, image %s; want %s, example.com/shop:v3", rev, image, v3)
		}
	})

	t.Run("the weights went back to 0 before the new canary took traffic", func(t *testing.T) {
		versions := timeline()
		// Each weight fledge wrote, in order: v2 through 10 and 30, back to
		// 0 at the restart, then v3 through every step and the promotion.
		want := []int32{10, 30, 0, 10, 30, 60, 100, 0}
		if got := distinctWeights(versions); !slices.Equal(got, want) {
			t.Errorf("canary weights written to the VirtualService: %v, want %v", got, want)
		}
		// Which revision each canary pod runs, from its ReplicaSet.
		images := map[string]string{}
		sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: fledgeengine.LabelFlight + "=shop"})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range sets.Items {
			images[rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]] = rs.Spec.Template.Spec.Containers[0].Image
		}
		index := map[string]int{}
		for i, v := range versions {
			index[v.resourceVersion] = i
		}
		// The routing side of the same story, independent of how fledge
		// got there: every VirtualService version that sent a request to
		// a v2 canary pod comes before every one that sent a request to a
		// v3 pod, and one between them gave the canary nothing. A version
		// the watch never saw predates it (index -1).
		lastV2, firstV3 := -1, len(versions)
		seen := map[string]int{}
		var firstV3At time.Time
		for _, r := range canaryRequests() {
			i, known := index[r.routedBy]
			if !known {
				i = -1
			}
			switch image := images[r.templateHash]; image {
			case "example.com/shop:v2":
				lastV2 = max(lastV2, i)
			case "example.com/shop:v3":
				firstV3 = min(firstV3, i)
				if firstV3At.IsZero() {
					firstV3At = r.at
				}
			default:
				t.Fatalf("a canary pod of unknown ReplicaSet %q served a request (known: %v)", r.templateHash, images)
			}
			seen[images[r.templateHash]]++
		}
		t.Logf("canary requests by image: %v; v3's first %s after the template changed", seen, firstV3At.Sub(replaced).Round(100*time.Millisecond))
		if seen["example.com/shop:v2"] == 0 || seen["example.com/shop:v3"] == 0 {
			t.Fatalf("canary requests by image: %v; want both revisions to have served", seen)
		}
		atZero := func(v weightVersion) bool { return v.canary == 0 }
		if lastV2 >= firstV3 || !slices.ContainsFunc(versions[lastV2+1:firstV3], atZero) {
			t.Errorf("v2 canary pods served up to VirtualService version #%d, v3 ones from #%d, with no version at 0%% in between; versions: %+v", lastV2, firstV3, versions)
		}
	})

	t.Run("the intermediate revision never became stable", func(t *testing.T) {
		// Kubernetes makes a ReplicaSet for every template it rolls a
		// Deployment to: none may exist for v2.
		sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range sets.Items {
			if fledgeengine.TemplateHash(rs.Spec.Template) == v2 {
				t.Errorf("ReplicaSet %s of the stable Deployment runs the intermediate revision %s", rs.Name, v2)
			}
		}
		d, err := sb.WaitDeploymentAvailable(ctx, ns, "shop", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Spec.Paused || d.Spec.Template.Spec.Containers[0].Image != "example.com/shop:v3" {
			t.Errorf("stable Deployment: paused=%v image=%s, want paused on example.com/shop:v3", d.Spec.Paused, d.Spec.Template.Spec.Containers[0].Image)
		}
		assertSettled(t, sb, ns)
	})
}

// weightVersion is one version of a VirtualService as written, with the
// canary's share it gives.
type weightVersion struct {
	resourceVersion string
	canary          int32
}

// watchCanaryWeights watches the VirtualService from its current version
// on and returns what it saw so far: every version and its canary weight,
// in order. A watch that ends before the test does fails it, since the
// timeline would have a hole.
func watchCanaryWeights(t *testing.T, sb *sandbox.Sandbox, ns, name, canaryHost string) func() []weightVersion {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	vss := sb.Istio.NetworkingV1().VirtualServices(ns)
	cur, err := vss.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := vss.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: cur.ResourceVersion, TimeoutSeconds: ptr.To[int64](600)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []weightVersion
	var broken error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			vs, ok := ev.Object.(*istionetv1.VirtualService)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				mu.Lock()
				broken = fmt.Errorf("unexpected watch event %s %T", ev.Type, ev.Object)
				mu.Unlock()
				continue
			}
			mu.Lock()
			seen = append(seen, weightVersion{vs.ResourceVersion, canaryWeight(vs, canaryHost)})
			mu.Unlock()
		}
		if ctx.Err() == nil {
			mu.Lock()
			broken = fmt.Errorf("the watch of virtualservice %s/%s ended early", ns, name)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return func() []weightVersion {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if broken != nil {
			t.Fatal(broken)
		}
		return slices.Clone(seen)
	}
}

// canaryWeight is the share of the canary host in the VirtualService's
// first http route, as the mesh applies it (a lone destination takes all).
func canaryWeight(vs *istionetv1.VirtualService, canaryHost string) int32 {
	if len(vs.Spec.Http) == 0 {
		return 0
	}
	dests := vs.Spec.Http[0].Route
	var w int32
	for _, d := range dests {
		if d.GetDestination().GetHost() == canaryHost {
			if len(dests) == 1 {
				return 100
			}
			w += d.Weight
		}
	}
	return w
}

func distinctWeights(versions []weightVersion) []int32 {
	var out []int32
	for _, v := range versions {
		if len(out) == 0 || out[len(out)-1] != v.canary {
			out = append(out, v.canary)
		}
	}
	return out
}

// canaryRequest is one request a canary pod served: which ReplicaSet's
// pod (its pod-template-hash), and the version of the namespace's
// VirtualService "shop" in use when it was routed.
type canaryRequest struct {
	templateHash, routedBy string
	at                     time.Time
}

// recordCanaryRequests records every request the workload's pods serve in
// the namespace from now until the test ends.
//
// The version is read when the observer runs, just after routing; a table
// swapped in between can only make a request look routed by a later
// version, never an earlier one, so "not before" checks on it are sound.
func recordCanaryRequests(t *testing.T, sb *sandbox.Sandbox, ns, workload string) func() []canaryRequest {
	var mu sync.Mutex
	var got []canaryRequest
	cancel := sb.Mesh.Observe(func(_ mesh.Request, resp mesh.Response) {
		if resp.Namespace != ns || resp.Workload != workload {
			return
		}
		r := canaryRequest{resp.TemplateHash, sb.Mesh.AppliedVersion("VirtualService", ns, "shop"), time.Now()}
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	})
	t.Cleanup(cancel)
	return func() []canaryRequest {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// shopRoutes is the VirtualService a team owns for its shop: the mesh
// and a public gateway, beta users to their own Service, a checkout route
// with retries and a timeout that also goes to the stable Service but is
// not fledge's to split, and the route "primary" that fledge splits.
func shopRoutes(ns string) *istionetv1.VirtualService {
	prefix := func(p string) *networkingv1.StringMatch {
		return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: p}}
	}
	shop := func() *networkingv1.Destination {
		return &networkingv1.Destination{Host: "shop", Port: &networkingv1.PortSelector{Number: 80}}
	}
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{
			Name: "shop-routes", Namespace: ns,
			Labels:      map[string]string{"team": "shop"},
			Annotations: map[string]string{"example.com/owner": "shop-team"},
		},
		Spec: networkingv1.VirtualService{
			Hosts:    []string{"shop"},
			Gateways: []string{"mesh", "public-gw"},
			Http: []*networkingv1.HTTPRoute{{
				Name: "beta",
				Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
					"x-user-tier": {MatchType: &networkingv1.StringMatch_Exact{Exact: "beta"}},
				}}},
				Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "shop-beta"}}},
			}, {
				Name:    "checkout",
				Match:   []*networkingv1.HTTPMatchRequest{{Uri: prefix("/checkout")}},
				Timeout: durationpb.New(3 * time.Second),
				Retries: &networkingv1.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(time.Second), RetryOn: "5xx,reset,connect-failure"},
				Route:   []*networkingv1.HTTPRouteDestination{{Destination: shop()}},
			}, {
				Name:    "primary",
				Match:   []*networkingv1.HTTPMatchRequest{{Uri: prefix("/")}},
				Timeout: durationpb.New(10 * time.Second),
				Headers: &networkingv1.Headers{Request: &networkingv1.Headers_HeaderOperations{Set: map[string]string{"x-via": "mesh"}}},
				Route: []*networkingv1.HTTPRouteDestination{{
					Destination: shop(),
					Headers:     &networkingv1.Headers{Response: &networkingv1.Headers_HeaderOperations{Add: map[string]string{"x-served-by": "shop"}}},
				}},
			}},
		},
	}
}

const primaryRoute = 2 // index of "primary" in shopRoutes

// A team that routes its host itself hands fledge one route to split; the
// rest of the object is theirs, kept in Git, and any byte fledge leaves
// changed there is drift a GitOps tool reports (or reverts mid-rollout).
func TestOnlyTheNamedRouteOfATeamsVirtualServiceChangesThroughARollout(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })

	// The beta route's destination exists, so that the mesh takes the
	// whole VirtualService as written.
	createAnnotatedApp(t, sb, ns, "shop-beta", nil, 0)
	written := shopRoutes(ns)
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, written, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// As the API server stores it: what every comparison is made against.
	stored := storedVirtualService(t, sb, ns, "shop-routes")
	createAnnotatedApp(t, sb, ns, "shop", map[string]string{
		rollout.AnnotationRollout:        "fast",
		rollout.AnnotationVirtualService: "shop-routes/primary",
	}, 200)
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	if f.Spec.VirtualService != "shop-routes" || f.Spec.Route != "primary" {
		t.Fatalf("flight spec routes through %q route %q, want shop-routes route primary", f.Spec.VirtualService, f.Spec.Route)
	}

	// unchanged checks the VirtualService after a rollout has settled.
	unchanged := func(t *testing.T) {
		t.Helper()
		// A terminal status is written just before its last effects (the
		// route's reset among them): give the route a moment to settle,
		// then compare everything.
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop-routes", metav1.GetOptions{})
			return err == nil && cmp.Equal(written.Spec.Http[primaryRoute].Route, got.Spec.Http[primaryRoute].Route, protocmp.Transform()), nil
		})
		now := storedVirtualService(t, sb, ns, "shop-routes")
		if diff := cmp.Diff(withoutRoute(t, stored, primaryRoute), withoutRoute(t, now, primaryRoute)); diff != "" {
			t.Errorf("outside spec.http[%d].route (-as written +now):\n%s", primaryRoute, diff)
		}
		// The split is undone: the named route is the stable destination
		// alone, as written, not a 100/0 split left behind.
		got, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop-routes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(written.Spec.Http[primaryRoute].Route, got.Spec.Http[primaryRoute].Route, protocmp.Transform()); diff != "" {
			t.Errorf("spec.http[%d].route (-as written +now):\n%s", primaryRoute, diff)
		}
		// fledge routes through the team's object and never makes its own.
		if names := virtualServiceNames(t, sb, ns); !slices.Equal(names, []string{"shop-routes"}) {
			t.Errorf("VirtualServices in the namespace: %v, want only the team's shop-routes", names)
		}
	}

	t.Run("after a promotion", func(t *testing.T) {
		before := sb.Mesh.WorkloadCounts(ns, "shop-canary")
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
		waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
		})
		// The canary served through the named route: the split happened,
		// so the comparison below is not of an object fledge never touched.
		if after := sb.Mesh.WorkloadCounts(ns, "shop-canary"); after.Requests == before.Requests {
			t.Fatal("the canary served no request during the rollout")
		}
		unchanged(t)
	})

	t.Run("after a rollback of a faulty revision", func(t *testing.T) {
		before := sb.Mesh.WorkloadCounts(ns, "shop-canary")
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v3", map[string]string{"sandbox.fledge.dev/error-rate": "0.1"})
		waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == rev
		})
		if after := sb.Mesh.WorkloadCounts(ns, "shop-canary"); after.Requests == before.Requests {
			t.Fatal("the canary served no request during the rollout")
		}
		unchanged(t)
	})
}

// storedVirtualService reads a VirtualService as the API server stores it,
// through the dynamic client, so that no field escapes a typed client's
// decoding.
func storedVirtualService(t *testing.T, sb *sandbox.Sandbox, ns, name string) map[string]any {
	t.Helper()
	gvr := istionetv1.SchemeGroupVersion.WithResource("virtualservices")
	u, err := sb.Dynamic.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u.Object
}

// withoutRoute is a copy of a stored object without what the API server
// changes on every write and without spec.http[i].route, the one field
// fledge may change.
func withoutRoute(t *testing.T, obj map[string]any, i int) map[string]any {
	t.Helper()
	out := (&unstructured.Unstructured{Object: obj}).DeepCopy().Object
	for _, f := range []string{"resourceVersion", "generation", "managedFields"} {
		unstructured.RemoveNestedField(out, "metadata", f)
	}
	http, _, err := unstructured.NestedSlice(out, "spec", "http")
	if err != nil || len(http) <= i {
		t.Fatalf("spec.http of the stored object: %v (%d routes)", err, len(http))
	}
	delete(http[i].(map[string]any), "route")
	if err := unstructured.SetNestedSlice(out, http, "spec", "http"); err != nil {
		t.Fatal(err)
	}
	return out
}

// Opting out is the way back from fledge, and must be safe at any moment:
// a team that removes the annotation mid-rollout gets plain Kubernetes
// behaviour back, with nothing left paused or half-routed.
func TestRemovingTheAnnotationMidRolloutGivesTheDeploymentBack(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	shopApp(t, sb, ns, "fast", 200)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryWeight > 0
	})
	if sb.Mesh.WorkloadCounts(ns, "shop-canary").Requests == 0 {
		// Wait for proof that traffic is split before opting out, so
		// that restoring it is really tested.
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return sb.Mesh.WorkloadCounts(ns, "shop-canary").Requests > 0, nil
		})
		if err != nil {
			t.Fatal("the canary never served a request")
		}
	}
	optedOut := time.Now()
	patch := fmt.Appendf(nil, `[{"op":"remove","path":"/metadata/annotations/%s"}]`, strings.ReplaceAll(rollout.AnnotationRollout, "/", "~1"))
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("the generated VirtualService is deleted and the mesh sends everything to stable", func(t *testing.T) {
		waitGone(t, "virtualservice shop", func(ctx context.Context) error {
			_, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop", metav1.GetOptions{})
			return err
		})
		t.Logf("routing restored %s after the annotation was removed", time.Since(optedOut).Round(100*time.Millisecond))
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return sb.Mesh.AppliedVersion("VirtualService", ns, "shop") == "", nil
		})
		if err != nil {
			t.Fatalf("the mesh still routes with virtualservice %s/shop", ns)
		}
		for i := range 500 {
			resp := sb.Mesh.Route(mesh.Request{Client: "probe", SourceNamespace: ns, Host: "shop", User: fmt.Sprint(i)})
			if resp.Workload != "shop" {
				t.Fatalf("request %d for shop was answered %d %s by workload %q, want the stable shop (problems: %v)", i, resp.Code, resp.Flags, resp.Workload, sb.Mesh.Problems())
			}
		}
	})

	t.Run("the canary Deployment and Service are deleted", func(t *testing.T) {
		waitGone(t, "deployment shop-canary", func(ctx context.Context) error {
			_, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
			return err
		})
		waitGone(t, "service shop-canary", func(ctx context.Context) error {
			_, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
			return err
		})
	})

	t.Run("the Flight is gone", func(t *testing.T) {
		waitGone(t, "flight shop", func(ctx context.Context) error {
			_, err := getFlight(ctx, sb, ns, "shop")
			return err
		})
	})

	t.Run("the Deployment is unpaused and Kubernetes rolls it to its template", func(t *testing.T) {
		d, err := sb.WaitDeploymentAvailable(ctx, ns, "shop", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if d.Spec.Paused {
			t.Fatal("the Deployment is still paused")
		}
		sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range sets.Items {
			if running := rs.Status.Replicas > 0; running != (fledgeengine.TemplateHash(rs.Spec.Template) == rev) {
				t.Errorf("ReplicaSet %s (template %s) has %d replicas; want pods on %s only", rs.Name, fledgeengine.TemplateHash(rs.Spec.Template), rs.Status.Replicas, rev)
			}
		}
		// Nothing takes it over again behind the team's back.
		time.Sleep(2 * time.Second)
		if d, err = sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{}); err != nil || d.Spec.Paused {
			t.Errorf("the Deployment 2s later: paused=%v (%v)", d.Spec.Paused, err)
		}
	})
}

// waitGone polls get until the object is not found.
func waitGone(t *testing.T, what string, get func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		last = get(ctx)
		return apierrors.IsNotFound(last), nil
	})
	if err != nil {
		t.Fatalf("%s still there after 20s (last get: %v)", what, last)
	}
}

// createAnnotatedApp creates a Deployment (2 replicas, pods labelled
// app=<name>) with the given annotations and a Service of the same name,
// and sends it client traffic when rps > 0. Unlike shopApp it waits for
// nothing (the caller knows what the annotations should lead to) and
// leaves dumpOnFailure to the test, which registers it once.
func createAnnotatedApp(t *testing.T, sb *sandbox.Sandbox, ns, name string, annotations map[string]string, rps float64) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	d, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=60"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":v1"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if rps > 0 {
		client := name + "-client-" + ns
		if err := sb.Mesh.AddClient(mesh.Client{Name: client, Namespace: ns, Host: name, RPS: rps, Users: 300}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Mesh.RemoveClient(client) })
	}
	return d
}
