package mesh

import (
	"maps"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func TestShadowHostAppendsBeforeThePort(t *testing.T) {
	for in, want := range map[string]string{
		"app":                           "app-shadow",
		"app:8080":                      "app-shadow:8080",
		"app.demo.svc.cluster.local:80": "app.demo.svc.cluster.local-shadow:80",
		"[fd00::1]:80":                  "[fd00::1]-shadow:80",
		"app.demo.svc.cluster.local":    "app.demo.svc.cluster.local-shadow",
	} {
		if got := ShadowHost(in); got != want {
			t.Errorf("ShadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAMirroredRouteCopiesItsShareToTheMirror: users are answered by the
// route's destination alone; the mirror gets a copy of its share of the
// requests, with "-shadow" in the host, whose answers (errors included)
// no client sees.
func TestAMirroredRouteCopiesItsShareToTheMirror(t *testing.T) {
	d := newDemo(annotated(map[string]string{annotationErrorRate: "1"})) // v2 fails every request
	for _, tc := range []struct {
		name    string
		route   *networking.HTTPRoute
		percent float64
	}{
		{"mirror with mirrorPercentage", &networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("app", "v1", 0)},
			Mirror: &networking.Destination{Host: "app", Subset: "v2"}, MirrorPercentage: &networking.Percent{Value: 30}}, 30},
		{"mirror without a percentage mirrors everything", &networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("app", "v1", 0)},
			Mirror: &networking.Destination{Host: "app", Subset: "v2"}}, 100},
		{"mirrors, each with its percentage", &networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("app", "v1", 0)},
			Mirrors: []*networking.HTTPMirrorPolicy{{Destination: &networking.Destination{Host: "app", Subset: "v2"}, Percentage: &networking.Percent{Value: 60}}}}, 60},
		{"a zero percentage mirrors nothing", &networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("app", "v1", 0)},
			Mirror: &networking.Destination{Host: "app", Subset: "v2"}, MirrorPercentage: &networking.Percent{Value: 0}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, problems := buildTable(d.snapshot(virtualService("demo", "app", 0, []string{"app"}, tc.route)))
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 4000
			shadows := 0
			for range n {
				req := request("app", nil)
				out := tbl.route(&req, rng)
				if out.resp.Workload != "app-v1" || out.resp.Code != 200 || out.resp.Mirrored {
					t.Fatalf("the client got %+v, want v1's answer", out.resp)
				}
				for _, s := range out.shadows {
					shadows++
					if !s.resp.Mirrored || s.resp.Workload != "app-v2" || s.resp.Code != 500 || s.mirrored.Host != "app-shadow" || req.Host != "app" {
						t.Fatalf("shadow %+v of host %q (request host %q), want v2's failed answer to app-shadow", s.resp, s.mirrored.Host, req.Host)
					}
				}
			}
			got := 100 * float64(shadows) / n
			if math.Abs(got-tc.percent) > 3 {
				t.Errorf("%.1f%% of requests mirrored, want %g%%", got, tc.percent)
			}
		})
	}
}

func TestMirrorAndMirrorsTogetherAreUninterpretable(t *testing.T) {
	v2 := &networking.Destination{Host: "app", Subset: "v2"}
	_, problems := buildTable(newDemo().snapshot(virtualService("demo", "app", 0, []string{"app"}, &networking.HTTPRoute{
		Route:   []*networking.HTTPRouteDestination{to("app", "v1", 0)},
		Mirror:  v2,
		Mirrors: []*networking.HTTPMirrorPolicy{{Destination: v2}},
	})))
	if len(problems) != 1 || !strings.Contains(problems[0].Field, "mirrors") {
		t.Errorf("problems %v, want the mirrors field named", problems)
	}
	_, problems = buildTable(newDemo().snapshot(virtualService("demo", "app", 0, []string{"app"}, &networking.HTTPRoute{
		Route:  []*networking.HTTPRouteDestination{to("app", "v1", 0)},
		Mirror: v2, MirrorPercentage: &networking.Percent{Value: 150},
	})))
	if len(problems) != 1 || !strings.Contains(problems[0].Field, "mirrorPercentage") {
		t.Errorf("problems %v, want mirrorPercentage named", problems)
	}
}

// A mirrored copy is reported by the proxy of the pod that served it
// (reporter="destination"), and not by the client's.
func TestAMirroredCopyIsReportedByTheServingProxyAlone(t *testing.T) {
	m, err := newTelemetry(1, Telemetry{})
	if err != nil {
		t.Fatal(err)
	}
	src := peerSourceLabels(peerLabels{workload: "client", namespace: "from", principal: "spiffe://cluster.local/ns/from/sa/default", app: "client", version: unknown, canonicalService: "client", canonicalRevision: "latest"})
	dst := destLabels{"app", "to", "spiffe://cluster.local/ns/to/sa/default", "app", "v2", "app.to.svc.cluster.local", "app", "to", clusterName, "app", "v2"}
	shadow := routed{resp: Response{Code: 500, Flags: "-", Mirrored: true}, host: "app.to.svc.cluster.local", ep: &endpoint{}, dst: &dst}
	m.recordMirrored(&src, HTTP, &shadow)
	m.recordMirrored(&src, HTTP, &routed{resp: Response{Code: 503, Flags: "UH", Mirrored: true}}) // no pod: nobody reports it
	got, _ := series(t, m.handler(), "/metrics")
	if want := map[string]float64{"destination/from/to": 1}; !maps.Equal(got, want) {
		t.Errorf("series %v, want %v", got, want)
	}
}
