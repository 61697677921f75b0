package mesh

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// The shop is the world of the comparator tests, in namespace demo: users
// call shop, whose VirtualService sends every request to stable (Service
// shop-stable, Deployment shop, two pods) and mirrors every one to
// shop-mirror, the comparator (Deployment shop-mirror), which compares the
// canary (Service shop-canary, Deployment shop-canary) with stable.
var (
	shopStableRev = Revision{Namespace: "demo", Workload: "shop", TemplateHash: "aaa111"}
	shopCanaryRev = Revision{Namespace: "demo", Workload: "shop-canary", TemplateHash: "bbb222"}
	shopMirrorRev = Revision{Namespace: "demo", Workload: "shop-mirror", TemplateHash: "ccc333"}
)

// The upstreams as fledge's engine writes them (rollout/engine).
const (
	shopCanaryHost = "shop-canary.demo.svc.cluster.local:80"
	shopStableHost = "shop-stable.demo.svc.cluster.local:80"
	shopCanaryURL  = "http://" + shopCanaryHost
	shopStableURL  = "http://" + shopStableHost
)

// compareArgs are the args of fledge's comparator for the shop, with
// --canary pointing at canary.
func compareArgs(canary string) []string {
	return []string{comparatorMode, "--canary=" + canary, "--stable=" + shopStableURL, "--workload=shop-canary", "--namespace=demo"}
}

func withArgs(args ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers = []corev1.Container{{Name: "fledge", Args: args}} }
}

// mirroredTo is a VirtualService for host that sends every request to
// host's Service and mirrors every one to mirror.
func mirroredTo(host, mirror string) *networkingv1.VirtualService {
	return virtualService("demo", host, 0, []string{host}, &networking.HTTPRoute{
		Route:  []*networking.HTTPRouteDestination{to(host, "", 0)},
		Mirror: &networking.Destination{Host: mirror},
	})
}

// shopObjects are the shop's Services and pods, the canary's pod carrying
// canary's options and the comparator running args.
func shopObjects(args []string, canary ...func(*corev1.Pod)) ([]*corev1.Service, []*corev1.Pod) {
	services := []*corev1.Service{
		service("demo", "shop", map[string]string{"app": "shop"}),
		service("demo", "shop-stable", map[string]string{"app": "shop", "track": "stable"}),
		service("demo", "shop-canary", map[string]string{"app": "shop", "track": "canary"}),
		service("demo", "shop-mirror", map[string]string{"app": "shop-mirror"}),
	}
	stable := map[string]string{"app": "shop", "track": "stable"}
	pods := []*corev1.Pod{
		deploymentPod("demo", "shop", "aaa111", 0, stable),
		deploymentPod("demo", "shop", "aaa111", 1, stable),
		deploymentPod("demo", "shop-canary", "bbb222", 0, map[string]string{"app": "shop", "track": "canary"}, canary...),
		deploymentPod("demo", "shop-mirror", "ccc333", 0, map[string]string{"app": "shop-mirror"}, withArgs(args...)),
	}
	return services, pods
}

// shopSnapshot is the shop with shop's VirtualService (stable, mirrored to
// the comparator) and extra ones.
func shopSnapshot(args []string, canary []func(*corev1.Pod), extra ...*networkingv1.VirtualService) snapshot {
	services, pods := shopObjects(args, canary...)
	shop := virtualService("demo", "shop", 0, []string{"shop"}, &networking.HTTPRoute{
		Route:  []*networking.HTTPRouteDestination{to("shop-stable", "", 0)},
		Mirror: &networking.Destination{Host: "shop-mirror"},
	})
	return snapshot{virtualServices: append([]*networkingv1.VirtualService{shop}, extra...), services: services, pods: pods}
}

// emulatorOver is an emulator that routes with the table built from s,
// without informers: Route uses the table it holds.
func emulatorOver(t *testing.T, s snapshot) (*Emulator, []Problem) {
	t.Helper()
	tbl, problems := buildTable(s)
	e := New(kubefake.NewClientset(), istiofake.NewSimpleClientset(), Options{Seed: 1})
	e.table.Store(tbl)
	t.Cleanup(e.Stop)
	return e, problems
}

// shopRequest is user i's request to the shop.
func shopRequest(i int, method string) Request {
	return Request{Client: "web", SourceNamespace: "demo", Host: "shop", Method: method,
		User: fmt.Sprintf("user-%d", i%50), Path: fmt.Sprintf("/items/%d?page=%d", i%13, i%3),
		Headers: map[string]string{"x-user-id": fmt.Sprintf("user-%d", i%50)}}
}

// seen tallies what observers saw of the shop's traffic.
type seen struct {
	mu                 sync.Mutex
	users, copies      int
	fromComparator     map[string]int // by the host the comparator called
	wrongUserAnswers   []string
	comparatorMisheard []string
}

func observeShop(e *Emulator) *seen {
	s := &seen{fromComparator: map[string]int{}}
	e.Observe(func(req Request, resp Response) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case req.Client == "shop-mirror":
			s.fromComparator[req.Host]++
			if resp.Mirrored || req.Headers[loopHeader] != "1" || req.SourceNamespace != "demo" || req.SourceLabels["app"] != "shop-mirror" {
				s.comparatorMisheard = append(s.comparatorMisheard, fmt.Sprintf("%+v -> %+v", req, resp))
			}
		case resp.Mirrored:
			s.copies++
			if resp.Workload != "shop-mirror" || req.Host != "shop-shadow" {
				s.comparatorMisheard = append(s.comparatorMisheard, fmt.Sprintf("copy %+v -> %+v", req, resp))
			}
		default:
			s.users++
			if resp.Workload != "shop" || resp.Code != 200 {
				s.wrongUserAnswers = append(s.wrongUserAnswers, fmt.Sprintf("%s %s -> %d from %s", req.Method, req.Path, resp.Code, resp.Workload))
			}
		}
	})
	return s
}

func TestParseComparator(t *testing.T) {
	const brokenSuffix = "; the comparator answers every request 503"
	working := &comparator{
		canary:   upstream{authority: shopCanaryHost},
		stable:   upstream{authority: shopStableHost},
		workload: "shop-canary", namespace: "demo",
	}
	broken := &comparator{broken: true}
	tests := []struct {
		name         string
		args         []string
		want         *comparator
		wantProblems []argProblem
	}{
		{name: "a pod without args is no comparator"},
		{name: "an app's args are not the comparator's", args: []string{"serve", "--canary=x"}},
		{name: "fledge's comparator args are read", args: compareArgs(shopCanaryURL), want: working},
		{
			name: "Go's other flag forms are read too",
			args: []string{comparatorMode, "-canary", shopCanaryURL, "--stable", shopStableURL, "-workload=shop-canary", "--namespace", "demo"},
			want: working,
		},
		{
			name: "a path prefix is kept, without its last slash",
			args: []string{comparatorMode, "--canary=https://shop-canary.demo/api/", "--stable=" + shopStableURL, "--workload=shop-canary", "--namespace=demo"},
			want: &comparator{canary: upstream{authority: "shop-canary.demo", path: "/api"}, stable: working.stable, workload: "shop-canary", namespace: "demo"},
		},
		{
			name:         "an unknown flag breaks the comparator",
			args:         append(compareArgs(shopCanaryURL), "--sample=0.5"),
			want:         broken,
			wantProblems: []argProblem{{"spec.containers[0].args[5]", `unknown flag "--sample=0.5" of mirror-compare (known: --canary, --stable, --workload, --namespace)` + brokenSuffix}},
		},
		{
			name:         "an argument that is no flag breaks the comparator",
			args:         append(compareArgs(shopCanaryURL), "extra"),
			want:         broken,
			wantProblems: []argProblem{{"spec.containers[0].args[5]", `"extra" is not a flag of mirror-compare (known: --canary, --stable, --workload, --namespace)` + brokenSuffix}},
		},
		{
			name:         "a missing flag breaks the comparator",
			args:         []string{comparatorMode, "--canary=" + shopCanaryURL, "--workload=shop-canary", "--namespace=demo"},
			want:         broken,
			wantProblems: []argProblem{{"spec.containers[0].args", "mirror-compare without --stable" + brokenSuffix}},
		},
		{
			name:         "a flag given twice breaks the comparator",
			args:         append(compareArgs(shopCanaryURL), "--workload=other"),
			want:         broken,
			wantProblems: []argProblem{{"spec.containers[0].args[5]", "--workload is given twice" + brokenSuffix}},
		},
		{
			name:         "a flag without its value breaks the comparator",
			args:         []string{comparatorMode, "--canary=" + shopCanaryURL, "--stable=" + shopStableURL, "--workload=shop-canary", "--namespace"},
			want:         broken,
			wantProblems: []argProblem{{"spec.containers[0].args[4]", "--namespace has no value" + brokenSuffix}, {"spec.containers[0].args", "mirror-compare without --namespace" + brokenSuffix}},
		},
		{
			name: "upstreams that are not base URLs break the comparator",
			args: []string{comparatorMode, "--canary=ftp://shop-canary", "--stable=http://shop-stable?x=1", "--workload=Shop_Canary", "--namespace=demo"},
			want: broken,
			wantProblems: []argProblem{
				{"spec.containers[0].args[1]", `--canary="ftp://shop-canary": scheme "ftp", want http or https` + brokenSuffix},
				{"spec.containers[0].args[2]", `--stable="http://shop-stable?x=1": has a query, want the copy's alone` + brokenSuffix},
				{"spec.containers[0].args[3]", `--workload="Shop_Canary": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')` + brokenSuffix},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := deploymentPod("demo", "shop-mirror", "ccc333", 0, nil)
			if tt.args != nil {
				withArgs(tt.args...)(pod)
			}
			got, problems := parseComparator(pod)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(comparator{}, upstream{})); diff != "" {
				t.Errorf("comparator mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantProblems, problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseComparator(f *testing.F) {
	f.Add(shopCanaryURL, "--stable="+shopStableURL, "--workload", "-x")
	f.Add("http://[::1", "--", "=", "")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		pod := deploymentPod("demo", "shop-mirror", "ccc333", 0, nil, withArgs(comparatorMode, "--canary="+a, b, c, d))
		got, problems := parseComparator(pod)
		if got == nil || got.broken != (len(problems) > 0) {
			t.Fatalf("comparator %+v with %d problems", got, len(problems))
		}
		if !got.broken && (got.canary.authority == "" || got.stable.authority == "" || got.workload == "" || got.namespace == "") {
			t.Fatalf("a working comparator without an upstream or a workload: %+v", got)
		}
	})
}

// TestAComparatorComparesEachCopy: the shop's users are answered by stable
// alone; the comparator asks the canary and stable each copy, through the
// mesh, from its own workload, and counts what Compare says.
func TestAComparatorComparesEachCopy(t *testing.T) {
	const n = 4000
	for _, tc := range []struct {
		name   string
		canary []func(*corev1.Pod)
		args   []string
		// want are the expected shares of the results; each is checked
		// within binomial bounds.
		want map[string]float64
		// canaryServed is whether the canary's pod answers the
		// comparator's requests.
		canaryServed bool
	}{
		{name: "a healthy canary answers every copy as stable does", want: map[string]float64{"same": 1}, canaryServed: true},
		{
			name:         "a canary with body-diff-rate 0.05 answers about 5% with another body",
			canary:       []func(*corev1.Pod){annotated(map[string]string{annotationBodyDiffRate: "0.05"})},
			want:         map[string]float64{"same": 0.95, "body_differs": 0.05},
			canaryServed: true,
		},
		{
			name:         "a canary with error-rate 0.2 answers about 20% with another status",
			canary:       []func(*corev1.Pod){annotated(map[string]string{annotationErrorRate: "0.2"})},
			want:         map[string]float64{"same": 0.8, "status_differs": 0.2},
			canaryServed: true,
		},
		{
			name:   "a canary without a ready pod leaves every copy unanswered",
			canary: []func(*corev1.Pod){notReady},
			want:   map[string]float64{"unanswered": 1},
		},
		{
			name: "a canary URL no Service has leaves every copy unanswered",
			args: compareArgs("http://shop-gone.demo:80"),
			want: map[string]float64{"unanswered": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args == nil {
				args = compareArgs(shopCanaryURL)
			}
			e, problems := emulatorOver(t, shopSnapshot(args, tc.canary))
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			obs := observeShop(e)
			for i := range n {
				if resp := e.Route(shopRequest(i, "GET")); resp.Workload != "shop" {
					t.Fatalf("user request %d answered by %q, want stable (shop)", i, resp.Workload)
				}
			}

			got := e.MirrorComparisons("demo", "shop-canary")
			t.Logf("comparisons of %d copies: %v", n, got)
			total := 0.0
			for result, count := range got {
				total += count
				if _, ok := tc.want[result]; !ok {
					t.Errorf("%g copies %s, want none", count, result)
				}
			}
			if total != n {
				t.Errorf("%g comparisons counted (%v), want one per copy, %d", total, got, n)
			}
			for result, p := range tc.want {
				lo, hi := binomialBounds(n, p, 4)
				if c := int(got[result]); c < lo || c > hi {
					t.Errorf("%d copies %s, want %d..%d (%g%%)", c, result, lo, hi, 100*p)
				}
			}

			if len(obs.wrongUserAnswers) > 0 || obs.users != n {
				t.Errorf("%d user requests observed, %d answered by other than stable, e.g. %v", obs.users, len(obs.wrongUserAnswers), obs.wrongUserAnswers[:min(1, len(obs.wrongUserAnswers))])
			}
			if obs.copies != n || len(obs.comparatorMisheard) > 0 {
				t.Errorf("%d copies observed, want %d; %d misheard, e.g. %v", obs.copies, n, len(obs.comparatorMisheard), obs.comparatorMisheard[:min(1, len(obs.comparatorMisheard))])
			}
			canaryHost := strings.TrimPrefix(args[1], "--canary=http://")
			if want := map[string]int{canaryHost: n, shopStableHost: n}; !maps.Equal(obs.fromComparator, want) {
				t.Errorf("the comparator's requests by host %v, want %v", obs.fromComparator, want)
			}

			// The canary's and stable's pods count the comparator's
			// requests; stable counts the users' too.
			served := e.Served()
			wantCanary := uint64(0)
			if tc.canaryServed {
				wantCanary = n
			}
			if got := served[shopCanaryRev].Requests; got != wantCanary {
				t.Errorf("the canary served %d requests, want %d (the comparator's)", got, wantCanary)
			}
			if got := served[shopStableRev].Requests; got != 2*n {
				t.Errorf("stable served %d requests, want %d (the users' and the comparator's)", got, 2*n)
			}
			if got := served[shopMirrorRev]; got != (Counts{Requests: n}) {
				t.Errorf("the comparator served %+v, want %d copies without an error", got, n)
			}
			if got := e.ClientCounts("shop-mirror").Requests; got != 2*n {
				t.Errorf("ClientCounts(shop-mirror) = %d requests, want %d", got, 2*n)
			}

			// The canary's proxy reports them, from the comparator.
			fromComparator := istioRequests(t, e, map[string]string{
				"reporter": "destination", "source_workload": "shop-mirror", "destination_workload": "shop-canary",
			})
			if fromComparator != float64(wantCanary) {
				t.Errorf("istio_requests_total{reporter=destination, source shop-mirror, destination shop-canary} = %g, want %d", fromComparator, wantCanary)
			}
		})
	}
}

// istioRequests sums istio_requests_total over the series with the given
// labels.
func istioRequests(t *testing.T, e *Emulator, want map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range scrapeHandler(t, e.metrics.handler())["istio_requests_total"].GetMetric() {
		l := labelMap(m)
		match := true
		for k, v := range want {
			match = match && l[k] == v
		}
		if match {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func scrapeHandler(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.Reader(rec.Body))
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// An unsafe copy (here a POST) is counted unsafe and asked of neither
// upstream: stable has served it already.
func TestAComparatorAsksNeitherUpstreamAnUnsafeCopy(t *testing.T) {
	e, _ := emulatorOver(t, shopSnapshot(compareArgs(shopCanaryURL), nil))
	obs := observeShop(e)
	for i, method := range []string{"POST", "PUT", "PATCH", "DELETE", "GET", "HEAD", "OPTIONS"} {
		e.Route(shopRequest(i, method))
	}
	if diff := cmp.Diff(map[string]float64{"unsafe": 4, "same": 3}, e.MirrorComparisons("demo", "shop-canary")); diff != "" {
		t.Errorf("comparisons (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{shopCanaryHost: 3, shopStableHost: 3}, obs.fromComparator); diff != "" {
		t.Errorf("the comparator's requests by host (-want +got):\n%s", diff)
	}
	if got := e.Served()[shopCanaryRev].Requests; got != 3 {
		t.Errorf("the canary served %d requests, want 3 (the safe copies')", got)
	}
}

// The comparator's requests are never mirrored, even when the canary's and
// stable's own VirtualServices mirror to the comparator: a copy costs two
// requests, and is compared once.
func TestAComparatorsRequestsAreNotMirroredBack(t *testing.T) {
	const n = 500
	e, problems := emulatorOver(t, shopSnapshot(compareArgs(shopCanaryURL), nil,
		mirroredTo("shop-canary", "shop-mirror"), mirroredTo("shop-stable", "shop-mirror")))
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	obs := observeShop(e)
	for i := range n {
		e.Route(shopRequest(i, "GET"))
	}
	if diff := cmp.Diff(map[string]float64{"same": n}, e.MirrorComparisons("demo", "shop-canary")); diff != "" {
		t.Errorf("comparisons (-want +got):\n%s", diff)
	}
	if obs.copies != n || e.Served()[shopMirrorRev].Requests != n {
		t.Errorf("%d copies observed, the comparator served %d, want %d: one per user request", obs.copies, e.Served()[shopMirrorRev].Requests, n)
	}

	// The canary's VirtualService does mirror a request that is not the
	// comparator's.
	direct := shopRequest(0, "GET")
	direct.Host = "shop-canary"
	e.Route(direct)
	if got := e.MirrorComparisons("demo", "shop-canary")["same"]; got != n+1 {
		t.Errorf("%g copies compared after a user's request to shop-canary, want %d", got, n+1)
	}
}

// A comparator that is its own canary (a mistake in its args) receives its
// own request, which carries mirrorcmp's LoopHeader: it counts it dropped
// and answers 202 without a body, and the copy it was comparing is
// body_differs (that 202 against stable's 200 with a body: one status
// class), as mirrorcmp's proxy would count them. Nothing recurses.
func TestAComparatorReachedByItsOwnRequestDropsIt(t *testing.T) {
	const n = 100
	e, _ := emulatorOver(t, shopSnapshot(compareArgs("http://shop-mirror.demo"), nil))
	for i := range n {
		e.Route(shopRequest(i, "GET"))
	}
	if diff := cmp.Diff(map[string]float64{"body_differs": n, "dropped": n}, e.MirrorComparisons("demo", "shop-canary")); diff != "" {
		t.Errorf("comparisons (-want +got):\n%s", diff)
	}
	if got := e.Served()[shopMirrorRev].Requests; got != 2*n {
		t.Errorf("the comparator served %d requests, want %d (each copy and its own request)", got, 2*n)
	}
}

// Args the comparator cannot run with are a Problem naming the pod and the
// arg; the pod answers every copy 503 and compares nothing.
func TestAComparatorWithBadArgsIsAProblemAndAnswers503(t *testing.T) {
	e, problems := emulatorOver(t, shopSnapshot(append(compareArgs(shopCanaryURL), "--sample=0.5"), nil))
	want := []Problem{{Kind: "Pod", Namespace: "demo", Name: "shop-mirror-ccc333-00000", Field: "spec.containers[0].args[5]",
		Message: `unknown flag "--sample=0.5" of mirror-compare (known: --canary, --stable, --workload, --namespace); the comparator answers every request 503`}}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	var copies []Response
	e.Observe(func(_ Request, resp Response) {
		if resp.Mirrored {
			copies = append(copies, resp)
		}
	})
	for i := range 10 {
		if resp := e.Route(shopRequest(i, "GET")); resp.Workload != "shop" || resp.Code != 200 {
			t.Fatalf("the user got %d from %q, want stable's 200", resp.Code, resp.Workload)
		}
	}
	if len(copies) != 10 || copies[0].Code != 503 || copies[0].Workload != "shop-mirror" {
		t.Errorf("copies %+v, want 10 answered 503 by shop-mirror", copies)
	}
	if got := e.MirrorComparisons("demo", "shop-canary"); len(got) > 0 {
		t.Errorf("comparisons %v, want none", got)
	}
	if got := e.Served()[shopCanaryRev].Requests; got != 0 {
		t.Errorf("the canary served %d requests, want none", got)
	}
}

// TestTheComparisonsCounterIsExposed runs the whole emulator: once the
// comparator's pod is in the routing table, fledge_mirror_comparisons_total
// has a series per result at zero, with the comparator's labels, beside
// Istio's metrics; copies then count in them.
func TestTheComparisonsCounterIsExposed(t *testing.T) {
	defer goleak.VerifyNone(t, ignoreFlagdEventForwarder)
	ctx := context.Background()
	services, pods := shopObjects(compareArgs(shopCanaryURL))
	var objects []runtime.Object
	for _, s := range services {
		objects = append(objects, s)
	}
	for _, p := range pods {
		objects = append(objects, p)
	}
	kube := kubefake.NewClientset(objects...)
	istio := istiofake.NewSimpleClientset()
	e := New(kube, istio, Options{Seed: 1, Debounce: 5 * time.Millisecond})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	shop := shopSnapshot(nil, nil).virtualServices[0]
	if _, err := istio.NetworkingV1().VirtualServices("demo").Create(ctx, shop, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the VirtualService", func() bool { return e.AppliedVersion("VirtualService", "demo", "shop") != "" })

	comparisons := func() map[string]float64 {
		out := map[string]float64{}
		for _, m := range scrape(t, e.MetricsAddr())["fledge_mirror_comparisons_total"].GetMetric() {
			l := labelMap(m)
			if names := slices.Sorted(maps.Keys(l)); !slices.Equal(names, []string{"destination_workload", "destination_workload_namespace", "result"}) {
				t.Fatalf("labels %v, want destination_workload, destination_workload_namespace, result", names)
			}
			if l["destination_workload"] != "shop-canary" || l["destination_workload_namespace"] != "demo" {
				t.Errorf("series %v, want the comparator's --workload and --namespace", l)
			}
			out[l["result"]] = m.GetCounter().GetValue()
		}
		return out
	}
	zero := map[string]float64{"same": 0, "status_differs": 0, "body_differs": 0, "unanswered": 0, "unsafe": 0, "skipped": 0, "dropped": 0}
	if diff := cmp.Diff(zero, comparisons()); diff != "" {
		t.Errorf("series before any copy (-want +got):\n%s", diff)
	}
	for i := range 5 {
		e.Route(shopRequest(i, "GET"))
	}
	e.Route(shopRequest(5, "POST"))
	want := maps.Clone(zero)
	want["same"], want["unsafe"] = 5, 1
	if diff := cmp.Diff(want, comparisons()); diff != "" {
		t.Errorf("series after 5 GETs and a POST (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"same": 5, "unsafe": 1}, e.MirrorComparisons("demo", "shop-canary")); diff != "" {
		t.Errorf("MirrorComparisons (-want +got):\n%s", diff)
	}
}
