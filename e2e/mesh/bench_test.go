package mesh

import (
	"context"
	"maps"
	"testing"

	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// BenchmarkRoute measures Emulator.Route end to end (routing, behaviour,
// counters and both reporters' metrics) on a realistic table: a
// VirtualService with a header-match route and an 80/20 weighted route over
// ten pods. In "flag", every pod also evaluates a release flag with a
// fractional rollout through flagd's provider, as every request of an app
// with a flag does.
func BenchmarkRoute(b *testing.B) {
	b.Run("no flag", func(b *testing.B) { benchmarkRoute(b, nil) })
	b.Run("flag", func(b *testing.B) {
		benchmarkRoute(b, map[string]string{
			annotationFlagSource:                      flagsConfigMap + "/" + flagsKey,
			annotationFlag:                            checkoutFlag,
			annotationVariantPrefix + "on.error-rate": "0.08",
		})
	})
}

func benchmarkRoute(b *testing.B, flagAnnotations map[string]string) {
	svc := service("demo", "app", map[string]string{"app": "app"})
	kubeObjects := []runtime.Object{svc,
		flagsConfigMapWith(checkoutDoc("off", `{"fractional":[{"var":"targetingKey"},["on",20],["off",80]]}`))}
	with := func(a map[string]string) map[string]string {
		out := maps.Clone(a)
		if out == nil {
			out = map[string]string{}
		}
		maps.Copy(out, flagAnnotations)
		return out
	}
	for i := range 5 {
		kubeObjects = append(kubeObjects,
			deploymentPod("demo", "app-v1", "aaa111", i, map[string]string{"app": "app", "version": "v1"},
				annotated(with(nil))),
			deploymentPod("demo", "app-v2", "bbb222", i, map[string]string{"app": "app", "version": "v2"},
				annotated(with(map[string]string{annotationErrorRate: "0.05", annotationLatency: "p50=20,p99=200"}))))
	}
	rule := newDemo().rule
	vs := virtualService("demo", "app", 0, []string{"app"},
		httpRule(headerIs("x-user-tier", exact("beta")), to("app", "v2", 0)),
		httpRule(nil, to("app", "v1", 80), to("app", "v2", 20)),
	)

	e := New(kubefake.NewClientset(kubeObjects...), istiofake.NewSimpleClientset(rule, vs), Options{Seed: 1})
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Stop()
	if p := e.Problems(); len(p) > 0 {
		b.Fatalf("problems: %v", p)
	}

	// Requests as a client with a 10% beta segment sends them.
	c, err := Client{Name: "web", Namespace: "demo", Host: "app", RPS: 1, Users: 1000,
		Labels:   map[string]string{"app": "web"},
		Segments: []Segment{{Share: 0.1, Headers: map[string]string{"x-user-tier": "beta"}}}}.normalized()
	if err != nil {
		b.Fatal(err)
	}
	gen := newGenerator(c, 1)
	reqs := make([]Request, 256)
	for i := range reqs {
		reqs[i] = gen.next()
	}

	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Route(reqs[i%len(reqs)])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
