package mesh

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

const (
	v1Pod0 = "app-v1-aaa111-00000"
	v2Pod0 = "app-v2-bbb222-00000"
)

// betaToV2 sends requests with x-user-tier: beta to v2 and the rest to v1.
func betaToV2(m *networking.StringMatch) *networkingv1.VirtualService {
	return virtualService("demo", "app", 0, []string{"app"},
		httpRule(headerIs("x-user-tier", m), to("app", "v2", 0)),
		httpRule(nil, to("app", "v1", 0)),
	)
}

func TestRoute(t *testing.T) {
	d := newDemo()
	v1 := servedBy(v1Pod0, v1Rev)
	v2 := servedBy(v2Pod0, v2Rev)
	beta := map[string]string{"x-user-tier": "beta"}

	tests := []struct {
		name string
		in   snapshot
		req  Request
		want Response
	}{
		{
			name: "a host without a VirtualService goes straight to its Service",
			in:   d.snapshot(),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "an exact header match sends the request to its subset",
			in:   d.snapshot(betaToV2(exact("beta"))),
			req:  request("app", beta),
			want: v2,
		},
		{
			name: "a request without the header falls through to the next route",
			in:   d.snapshot(betaToV2(exact("beta"))),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "a prefix header match accepts a longer value",
			in:   d.snapshot(betaToV2(prefix("be"))),
			req:  request("app", beta),
			want: v2,
		},
		{
			name: "a regex header match must match the whole value, not a part of it",
			in:   d.snapshot(betaToV2(regex("bet"))),
			req:  request("app", beta),
			want: v1,
		},
		{
			name: "a regex header match that covers the whole value matches",
			in:   d.snapshot(betaToV2(regex("bet[a-z]"))),
			req:  request("app", beta),
			want: v2,
		},
		{
			name: "an empty header match means the header is present",
			in:   d.snapshot(betaToV2(&networking.StringMatch{})),
			req:  request("app", map[string]string{"x-user-tier": ""}),
			want: v2,
		},
		{
			name: "withoutHeaders matches a request that lacks the header, comparing it as empty",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				&networking.HTTPRoute{
					Match: []*networking.HTTPMatchRequest{{WithoutHeaders: map[string]*networking.StringMatch{"x-user-tier": exact("stable")}}},
					Route: []*networking.HTTPRouteDestination{to("app", "v2", 0)},
				},
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", nil),
			want: v2,
		},
		{
			name: "withoutHeaders rejects a request whose header matches",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				&networking.HTTPRoute{
					Match: []*networking.HTTPMatchRequest{{WithoutHeaders: map[string]*networking.StringMatch{"x-user-tier": exact("stable")}}},
					Route: []*networking.HTTPRouteDestination{to("app", "v2", 0)},
				},
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", map[string]string{"x-user-tier": "stable"}),
			want: v1,
		},
		{
			name: "withoutHeaders compares a missing header as empty, so an empty exact value rejects it",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				&networking.HTTPRoute{
					Match: []*networking.HTTPMatchRequest{{WithoutHeaders: map[string]*networking.StringMatch{"x-user-tier": exact("")}}},
					Route: []*networking.HTTPRouteDestination{to("app", "v2", 0)},
				},
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "the first matching route wins over a more specific later one",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Uri: prefix("/")}}, to("app", "v1", 0)),
				httpRule(headerIs("x-user-tier", exact("beta")), to("app", "v2", 0)))),
			req:  request("app", beta),
			want: v1,
		},
		{
			name: "match blocks of one route are ORed",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Uri: exact("/never")}, {Method: exact("GET")}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", nil),
			want: v2,
		},
		{
			name: "conditions inside one match block are ANDed",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Uri: exact("/never"), Method: exact("GET")}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "a uri match ignores the query string and ignoreUriCase applies to prefixes",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Uri: prefix("/API"), IgnoreUriCase: true}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  func() Request { r := request("app", nil); r.Path = "/api/items?x=/API"; return r }(),
			want: v2,
		},
		{
			name: "a query parameter match reads the query string",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{QueryParams: map[string]*networking.StringMatch{"canary": exact("1")}}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  func() Request { r := request("app", nil); r.Path = "/items?canary=1"; return r }(),
			want: v2,
		},
		{
			name: "an authority match compares the host as the client sent it",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Authority: exact("app.demo")}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app.demo", nil),
			want: v2,
		},
		{
			name: "a sourceLabels match applies only to clients with those labels",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{SourceLabels: map[string]string{"app": "tester"}}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req: func() Request {
				r := request("app", nil)
				r.SourceLabels = map[string]string{"app": "tester"}
				return r
			}(),
			want: v2,
		},
		{
			name: "a sourceNamespace match applies only to clients in that namespace",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{SourceNamespace: "elsewhere"}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "a match that names only another gateway never applies to sidecars",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Gateways: []string{"demo/ingress"}}}, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 0)))),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "a request no route matches gets 404 NR",
			in:   d.snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(headerIs("x-user-tier", exact("beta")), to("app", "v2", 0)))),
			req:  request("app", nil),
			want: Response{Code: 404, Flags: "NR"},
		},
		{
			name: "a gRPC request no route matches gets Envoy's gRPC local reply",
			in:   d.snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(headerIs("x-user-tier", exact("beta")), to("app", "v2", 0)))),
			req:  func() Request { r := request("app", nil); r.Protocol = GRPC; return r }(),
			want: Response{Code: 200, GRPCStatus: "12", Flags: "NR"},
		},
		{
			name: "a subset whose pods are not Ready gets 503 UH",
			in:   newDemo(notReady).snapshot(betaToV2(exact("beta"))),
			req:  request("app", beta),
			want: Response{Code: 503, Flags: "UH", Service: appHost},
		},
		{
			name: "a subset no DestinationRule defines gets 503 NC",
			in:   d.snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v3", 0)))),
			req:  request("app", nil),
			want: Response{Code: 503, Flags: "NC", Service: appHost},
		},
		{
			name: "a destination host without a Service gets 503 NC",
			in:   d.snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("gone", "", 0)))),
			req:  request("app", nil),
			want: Response{Code: 503, Flags: "NC", Service: "gone.demo.svc.cluster.local"},
		},
		{
			name: "a request host that nothing knows gets 503 NC",
			in:   d.snapshot(),
			req:  request("nothing", nil),
			want: Response{Code: 503, Flags: "NC", Service: "nothing.demo.svc.cluster.local"},
		},
		{
			name: "a client in another namespace reaches the VirtualService through host.namespace",
			in:   d.snapshot(betaToV2(exact("beta"))),
			req:  func() Request { r := request("app.demo", beta); r.SourceNamespace = "other"; return r }(),
			want: v2,
		},
		{
			name: "a short host resolves in the client's namespace, not the Service's",
			in:   d.snapshot(betaToV2(exact("beta"))),
			req:  func() Request { r := request("app", beta); r.SourceNamespace = "other"; return r }(),
			want: Response{Code: 503, Flags: "NC", Service: "app.other.svc.cluster.local"},
		},
		{
			name: "a VirtualService in another namespace claims a host by its FQDN",
			in: d.snapshot(virtualService("ops", "app-override", 0, []string{appHost},
				httpRule(nil, to(appHost, "v2", 0)))),
			req:  request("app", nil),
			want: v2,
		},
		{
			name: "a short destination host is expanded with the VirtualService's namespace",
			in: d.snapshot(virtualService("ops", "app-override", 0, []string{appHost},
				httpRule(nil, to("app", "v2", 0)))),
			req:  request("app", nil),
			want: Response{Code: 503, Flags: "NC", Service: "app.ops.svc.cluster.local"},
		},
		{
			name: "a VirtualService bound only to a gateway does not route sidecar traffic",
			in:   d.snapshot(withGateways(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v2", 0))), "demo/ingress")),
			req:  request("app", nil),
			want: v1,
		},
		{
			name: "a VirtualService bound to mesh and a gateway routes sidecar traffic",
			in:   d.snapshot(withGateways(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v2", 0))), "demo/ingress", "mesh")),
			req:  request("app", nil),
			want: v2,
		},
		{
			name: "a wildcard host routes the hosts under it",
			in:   d.snapshot(virtualService("demo", "all", 0, []string{"*.demo.svc.cluster.local"}, httpRule(nil, to("app", "v2", 0)))),
			req:  request("app", nil),
			want: v2,
		},
		{
			name: "an exact host wins over a wildcard that also covers it",
			in: d.snapshot(
				virtualService("demo", "all", 0, []string{"*"}, httpRule(nil, to("app", "v1", 0))),
				virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v2", 0)))),
			req:  request("app", nil),
			want: v2,
		},
		{
			name: "a direct response answers with its status",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				&networking.HTTPRoute{DirectResponse: &networking.HTTPDirectResponse{Status: 418}})),
			req:  request("app", nil),
			want: Response{Code: 418, Flags: "-"},
		},
		{
			name: "a redirect answers 301",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				&networking.HTTPRoute{Redirect: &networking.HTTPRedirect{Uri: "/new"}})),
			req:  request("app", nil),
			want: Response{Code: 301, Flags: "-"},
		},
		{
			name: "a route whose destinations all weigh 0 gets 503 NC",
			in:   d.snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v1", 0), to("app", "v2", 0)))),
			req:  request("app", nil),
			want: Response{Code: 503, Flags: "NC"},
		},
		{
			name: "a route-level set-cookie reaches the response",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"}, &networking.HTTPRoute{
				Route: []*networking.HTTPRouteDestination{to("app", "v2", 0)},
				Headers: &networking.Headers{Response: &networking.Headers_HeaderOperations{
					Set: map[string]string{"Set-Cookie": "canary=yes; Path=/; Max-Age=3600"},
				}},
			})),
			req: request("app", nil),
			want: func() Response {
				r := servedBy(v2Pod0, v2Rev)
				r.SetCookies = map[string]string{"canary": "yes"}
				return r
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, _ := buildTable(tt.in)
			req := tt.req
			got := tbl.route(&req, rand.New(rand.NewPCG(1, 2))).resp
			if diff := cmp.Diff(tt.want, got, ignoreLatencyAndBody); diff != "" {
				t.Errorf("route(%s %s %v) mismatch (-want +got):\n%s", req.Host, req.Path, req.Headers, diff)
			}
		})
	}
}

// shares routes n requests and returns the share each revision served.
func shares(t *testing.T, tbl *table, n int, req Request) map[Revision]float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 42))
	counts := map[Revision]float64{}
	for range n {
		r := req
		resp := tbl.route(&r, rng).resp
		rev, ok := resp.Revision()
		if !ok {
			t.Fatalf("request reached no pod: %+v", resp)
		}
		counts[rev]++
	}
	for rev := range counts {
		counts[rev] /= float64(n)
	}
	return counts
}

func TestWeightedRoutes(t *testing.T) {
	tests := []struct {
		name    string
		weights [2]int32
		want    map[Revision]float64
	}{
		{"an 80/20 split sends a fifth of the requests to v2", [2]int32{80, 20}, map[Revision]float64{v1Rev: 0.8, v2Rev: 0.2}},
		{"weights that do not add up to 100 split in proportion", [2]int32{30, 30}, map[Revision]float64{v1Rev: 0.5, v2Rev: 0.5}},
		{"a weight of 0 gets nothing", [2]int32{100, 0}, map[Revision]float64{v1Rev: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, _ := buildTable(newDemo().snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule(nil, to("app", "v1", tt.weights[0]), to("app", "v2", tt.weights[1])))))
			got := shares(t, tbl, 20000, request("app", nil))
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 0.015)); diff != "" {
				t.Errorf("shares mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoundRobinSpreadsOverEndpoints(t *testing.T) {
	tbl, _ := buildTable(newDemo().snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v1", 0)))))
	rng := rand.New(rand.NewPCG(1, 1))
	var got []string
	for range 4 {
		req := request("app", nil)
		got = append(got, tbl.route(&req, rng).resp.Pod)
	}
	want := []string{v1Pod0, "app-v1-aaa111-00001", v1Pod0, "app-v1-aaa111-00001"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pods mismatch (-want +got):\n%s", diff)
	}
}

// threeServices is a world of three Services in namespace demo, each
// selecting its own Deployment's one pod: app, app-canary and
// app-baseline, as fledge runs a canary beside a fresh baseline.
func threeServices() snapshot {
	var s snapshot
	for i, name := range []string{"app", "app-canary", "app-baseline"} {
		l := map[string]string{"app": name}
		s.services = append(s.services, service("demo", name, l))
		s.pods = append(s.pods, deploymentPod("demo", name, fmt.Sprintf("h%d", i), 0, l))
	}
	return s
}

func TestAThreeWaySplitSendsEachServiceItsWeight(t *testing.T) {
	rev := func(workload string, i int) Revision {
		return Revision{Namespace: "demo", Workload: workload, TemplateHash: fmt.Sprintf("h%d", i)}
	}
	stable, canary, baseline := rev("app", 0), rev("app-canary", 1), rev("app-baseline", 2)
	tests := []struct {
		name    string
		weights [3]int32
		want    map[Revision]float64
	}{
		{"80/10/10 sends a tenth to each of canary and baseline", [3]int32{80, 10, 10}, map[Revision]float64{stable: 0.8, canary: 0.1, baseline: 0.1}},
		{"50/25/25 splits in proportion", [3]int32{50, 25, 25}, map[Revision]float64{stable: 0.5, canary: 0.25, baseline: 0.25}},
		{"a stable destination at 0 gets nothing", [3]int32{0, 50, 50}, map[Revision]float64{canary: 0.5, baseline: 0.5}},
		{"a baseline destination at 0 gets nothing", [3]int32{90, 10, 0}, map[Revision]float64{stable: 0.9, canary: 0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := threeServices()
			s.virtualServices = []*networkingv1.VirtualService{virtualService("demo", "app", 0, []string{"app"},
				httpRule(nil, to("app", "", tt.weights[0]), to("app-canary", "", tt.weights[1]), to("app-baseline", "", tt.weights[2])))}
			tbl, problems := buildTable(s)
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			got := shares(t, tbl, 20000, request("app", nil))
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 0.015)); diff != "" {
				t.Errorf("shares mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A destination's response headers are its own: in a three-way split, the
// canary destination's Set-Cookie reaches the canary's users alone.
func TestAThreeWaySplitSetsADestinationsCookieOnItsOwnResponses(t *testing.T) {
	s := threeServices()
	canary := to("app-canary", "", 10)
	canary.Headers = &networking.Headers{Response: &networking.Headers_HeaderOperations{Add: map[string]string{"set-cookie": "pin=1; Max-Age=60; Path=/"}}}
	s.virtualServices = []*networkingv1.VirtualService{virtualService("demo", "app", 0, []string{"app"},
		httpRule(nil, to("app", "", 80), canary, to("app-baseline", "", 10)))}
	tbl, _ := buildTable(s)
	rng := rand.New(rand.NewPCG(7, 7))
	served := map[string]int{}
	for range 2000 {
		req := request("app", nil)
		resp := tbl.route(&req, rng).resp
		served[resp.Workload]++
		if pinned := resp.SetCookies["pin"] == "1"; pinned != (resp.Workload == "app-canary") {
			t.Fatalf("a response of %s sets cookies %v; want the pin set by app-canary's alone", resp.Workload, resp.SetCookies)
		}
	}
	if served["app"] == 0 || served["app-canary"] == 0 || served["app-baseline"] == 0 {
		t.Errorf("served %v, want all three Services to serve some", served)
	}
}
