package mesh

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
)

const ignoredVS = "; the VirtualService is ignored and its hosts route straight to their Services"

func TestBuildTableProblems(t *testing.T) {
	d := newDemo()
	tests := []struct {
		name string
		in   snapshot
		want []Problem
		// wantWorkload is who serves a plain request to "app" afterwards,
		// showing whether the configuration was applied.
		wantWorkload string
	}{
		{
			name:         "a clean configuration has no problems",
			in:           d.snapshot(betaToV2(exact("beta"))),
			wantWorkload: "app-v1",
		},
		{
			name: "a weight above 100 makes the VirtualService uninterpretable",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule(nil, to("app", "v2", 0)),
				httpRule(nil, to("app", "v1", 150), to("app", "v2", -50)))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app",
				Field: "spec.http[1].route[0].weight", Message: "150 is outside 0..100" + ignoredVS}},
			wantWorkload: "app-v1",
		},
		{
			name: "a match on port is not emulated and the whole VirtualService is skipped",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{Uri: prefix("/")}, {Port: 8080}}, to("app", "v2", 0)))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app",
				Field: "spec.http[0].match[1].port", Message: "not supported by the mesh emulator" + ignoredVS}},
			wantWorkload: "app-v1",
		},
		{
			name: "statPrefix and scheme are reported by their JSON names",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule([]*networking.HTTPMatchRequest{{StatPrefix: "x", Scheme: exact("http")}}, to("app", "v2", 0)))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app",
				Field: "spec.http[0].match[0].scheme", Message: "not supported by the mesh emulator" + ignoredVS}},
			wantWorkload: "app-v1",
		},
		{
			name: "a delegate route is not emulated",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				&networking.HTTPRoute{Delegate: &networking.Delegate{Name: "other"}})),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app",
				Field: "spec.http[0].delegate", Message: "not supported by the mesh emulator" + ignoredVS}},
			wantWorkload: "app-v1",
		},
		{
			name: "an invalid regex is reported with the header it belongs to",
			in:   d.snapshot(betaToV2(regex("(beta"))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app",
				Field:   "spec.http[0].match[0].headers[x-user-tier]",
				Message: "regex \"(beta\" is not valid RE2: error parsing regexp: missing closing ): `(beta`" + ignoredVS}},
			wantWorkload: "app-v1",
		},
		{
			name: "ignored route features such as retries and timeouts are not problems",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"}, &networking.HTTPRoute{
				Route:   []*networking.HTTPRouteDestination{to("app", "v2", 0)},
				Retries: &networking.HTTPRetry{Attempts: 3},
				Rewrite: &networking.HTTPRewrite{Uri: "/v2"},
			})),
			wantWorkload: "app-v2",
		},
		{
			name: "when two VirtualServices claim a host the oldest wins and the other is reported",
			in: d.snapshot(
				virtualService("demo", "newer", 2*time.Hour, []string{"app"}, httpRule(nil, to("app", "v1", 0))),
				virtualService("demo", "older", time.Hour, []string{"app"}, httpRule(nil, to("app", "v2", 0)))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "newer", Field: "spec.hosts[0]",
				Message: "host app.demo.svc.cluster.local is also claimed by virtualservice demo/older, which is older; this one is ignored for that host"}},
			wantWorkload: "app-v2",
		},
		{
			name: "weights that do not add up to 100 are reported but applied",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule(nil, to("app", "v1", 0), to("app", "v2", 90)))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app", Field: "spec.http[0].route",
				Message: "weights add up to 90, not 100; traffic is split in proportion to them, as Envoy does"}},
			wantWorkload: "app-v2",
		},
		{
			name: "a destination without a Service is reported and the route kept",
			in: d.snapshot(virtualService("demo", "app", 0, []string{"app"},
				httpRule(headerIs("x-old", &networking.StringMatch{}), to("legacy", "", 0)),
				httpRule(nil, to("app", "v2", 0)))),
			want: []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "app", Field: "spec.http[0].route[0].destination.host",
				Message: "no Service has host legacy.demo.svc.cluster.local; requests routed there get 503 NC"}},
			wantWorkload: "app-v2",
		},
		{
			name: "a second DestinationRule for the same host is reported",
			in: func() snapshot {
				s := d.snapshot()
				s.destinationRules = append(s.destinationRules, destinationRule("demo", "app-copy", time.Hour, appHost))
				return s
			}(),
			want: []Problem{{Kind: "DestinationRule", Namespace: "demo", Name: "app-copy", Field: "spec.host",
				Message: "host app.demo.svc.cluster.local is also configured by destinationrule demo/app, which takes precedence; this rule is ignored"}},
			wantWorkload: "app-v1",
		},
		{
			name: "bad behaviour annotations are reported per pod and ignored",
			in: func() snapshot {
				s := newDemo(annotated(map[string]string{
					annotationErrorRate:          "abc",
					annotationPrefix + "latency": "5",
				})).snapshot()
				return s
			}(),
			want: []Problem{
				{Kind: "Pod", Namespace: "demo", Name: v2Pod0, Field: "metadata.annotations[sandbox.fledge.dev/error-rate]",
					Message: `"abc" is not a number in [0,1]; ignored, the pod behaves as healthy`},
				{Kind: "Pod", Namespace: "demo", Name: v2Pod0, Field: "metadata.annotations[sandbox.fledge.dev/latency]",
					Message: "unknown behaviour annotation (known: sandbox.fledge.dev/error-rate, sandbox.fledge.dev/error-code, sandbox.fledge.dev/grpc-error-rate, sandbox.fledge.dev/latency-ms, sandbox.fledge.dev/body-diff-rate, sandbox.fledge.dev/error-rate-after, sandbox.fledge.dev/flag-source, sandbox.fledge.dev/flag, sandbox.fledge.dev/variant.<variant>.<aspect>); ignored"},
			},
			wantWorkload: "app-v1",
		},
		{
			name: "a malformed variant annotation is reported per pod and ignored",
			in: newDemo(annotated(map[string]string{
				annotationFlagSource:                      "flags/flags.json",
				annotationFlag:                            "new-checkout",
				annotationVariantPrefix + "on.error-rate": "lots",
			})).snapshot(),
			want: []Problem{{Kind: "Pod", Namespace: "demo", Name: v2Pod0, Field: "metadata.annotations[sandbox.fledge.dev/variant.on.error-rate]",
				Message: `"lots" is not a number in [0,1]; ignored, requests served with variant "on" take the pod's base error-rate`}},
			wantWorkload: "app-v1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, got := buildTable(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(got, tbl.problems); diff != "" {
				t.Errorf("table keeps other problems than it returned (-returned +kept):\n%s", diff)
			}
			req := request("app", nil)
			if w := tbl.route(&req, rand.New(rand.NewPCG(1, 1))).resp.Workload; w != tt.wantWorkload {
				t.Errorf("a plain request was served by %q, want %q", w, tt.wantWorkload)
			}
		})
	}
}

func TestBuildTableRecordsVersions(t *testing.T) {
	d := newDemo()
	vs := betaToV2(exact("beta"))
	vs.ResourceVersion = "42"
	tbl, _ := buildTable(d.snapshot(vs))

	tests := []struct {
		name            string
		kind, ns, name_ string
		want            string
	}{
		{"a VirtualService in the table has its resourceVersion", "VirtualService", "demo", "app", "42"},
		{"kinds are case-insensitive", "virtualservice", "demo", "app", "42"},
		{"a Pod is recorded too", "Pod", "demo", v2Pod0, "1"},
		{"an object not in the table has no version", "Service", "demo", "other", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tbl.versions[objectRef{lowerKind(tt.kind), tt.ns, tt.name_}]; got != tt.want {
				t.Errorf("version = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBuildTableDoesNotModifyInputs guards the rule that informer cache
// objects are never modified.
func TestBuildTableDoesNotModifyInputs(t *testing.T) {
	d := newDemo(annotated(map[string]string{annotationErrorRate: "0.5"}))
	vs := betaToV2(exact("beta"))
	s := d.snapshot(vs)
	before := snapshot{
		virtualServices:  []*networkingv1.VirtualService{vs.DeepCopy()},
		destinationRules: []*networkingv1.DestinationRule{d.rule.DeepCopy()},
		services:         []*corev1.Service{d.svc.DeepCopy()},
	}
	for _, p := range s.pods {
		before.pods = append(before.pods, p.DeepCopy())
	}
	buildTable(s)
	opts := cmp.Comparer(func(x, y *networkingv1.VirtualService) bool {
		return cmp.Equal(x.ObjectMeta, y.ObjectMeta) && x.Spec.String() == y.Spec.String()
	})
	drOpts := cmp.Comparer(func(x, y *networkingv1.DestinationRule) bool {
		return cmp.Equal(x.ObjectMeta, y.ObjectMeta) && x.Spec.String() == y.Spec.String()
	})
	if diff := cmp.Diff(before, s, cmp.AllowUnexported(snapshot{}, configSnapshot{}), opts, drOpts); diff != "" {
		t.Errorf("buildTable modified its input (-before +after):\n%s", diff)
	}
}

func TestProblemString(t *testing.T) {
	p := Problem{Kind: "VirtualService", Namespace: "demo", Name: "app", Field: "spec.http[1].route[0].weight", Message: "150 is outside 0..100"}
	want := "virtualservice demo/app: spec.http[1].route[0].weight: 150 is outside 0..100"
	if got := p.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
