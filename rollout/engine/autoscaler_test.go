package engine

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

func autoscaler(name, apiVersion, kind, target string, maxReplicas int32) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: apiVersion, Kind: kind, Name: target},
			MinReplicas:    ptr.To(int32(1)), MaxReplicas: maxReplicas,
		},
	}
}

// The autoscalers of a Deployment are those whose target is it (apps, any
// version), read from an index: one that targets another Deployment, or
// something of the same name that is not a Deployment, is not its; one
// that targets fledge's canary of it is reported as foreign.
func TestTheAutoscalersOfADeploymentAreThoseThatTargetIt(t *testing.T) {
	s, _ := stableSubject(false)
	d := s.Deployment
	d.Spec.Replicas = ptr.To(int32(4))
	for _, tc := range []struct {
		name                string
		hpas                []*autoscalingv2.HorizontalPodAutoscaler
		autoscaler, foreign string
		max                 int32
	}{
		{name: "none"},
		{name: "its own and others'", hpas: []*autoscalingv2.HorizontalPodAutoscaler{
			autoscaler("shop", "apps/v1", "Deployment", "shop", 9),
			autoscaler("shop-extra", "apps/v1beta2", "Deployment", "shop", 12),
			autoscaler("cart", "apps/v1", "Deployment", "cart", 30),
			autoscaler("shop-rs", "apps/v1", "ReplicaSet", "shop", 30),
			autoscaler("shop-custom", "example.com/v1", "Deployment", "shop", 30),
		}, autoscaler: "HorizontalPodAutoscaler shop, shop-extra", max: 12},
		{name: "one on fledge's canary", hpas: []*autoscalingv2.HorizontalPodAutoscaler{
			autoscaler("grabby", "apps/v1", "Deployment", "shop-canary", 5),
		}, foreign: "HorizontalPodAutoscaler demo/grabby targets shop-canary, a Deployment of fledge's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(d)
			for _, h := range tc.hpas {
				if _, err := kube.AutoscalingV2().HorizontalPodAutoscalers("demo").Create(context.Background(), h, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			c := NewController(ControllerConfig{Kube: kube, Fledge: fledgefake.NewSimpleClientset(), Router: traffictest.NewRouter(), Policies: policyMap(nil),
				Namespaces: []string{"demo"}, Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics(prometheus.NewRegistry())})
			if err := c.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			var o rollout.Observed
			c.observeAutoscalers(d, &o)
			if o.Autoscaler != tc.autoscaler || o.AutoscalerMax != tc.max || o.ForeignAutoscaler != tc.foreign || o.StableReplicas != 4 {
				t.Errorf("autoscaler %q (max %d), foreign %q, stable replicas %d; want %q (max %d), foreign %q, 4",
					o.Autoscaler, o.AutoscalerMax, o.ForeignAutoscaler, o.StableReplicas, tc.autoscaler, tc.max, tc.foreign)
			}
		})
	}
}

// A canary fledge sizes gets that size, and a new size at the next
// EnsureCanary (a patch of its replicas alone); without a size it is as
// large as stable. Its baseline gets the same size. The Deployment is
// never written.
func TestACanarySizedByItsShareGetsThatSizeAndFollows(t *testing.T) {
	ctx := context.Background()
	s, rev := stableSubject(false)
	rs, stableRev := stableReplicaSet(s.Deployment)
	kube := fake.NewClientset(s.Deployment, rs)
	x := &Executor{Kube: kube}
	size := func(name string) int32 {
		t.Helper()
		got, err := kube.AppsV1().Deployments("demo").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ptr.Deref(got.Spec.Replicas, -1)
	}
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	if got := size("shop-canary"); got != 2 {
		t.Errorf("unsized canary: %d replicas, want stable's 2", got)
	}
	for _, n := range []int32{3, 7, 1} {
		if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev, Replicas: n}); err != nil {
			t.Fatal(err)
		}
		if err := x.apply(ctx, s, rollout.EnsureBaseline{Revision: stableRev, Replicas: n}); err != nil {
			t.Fatal(err)
		}
		if got, base := size("shop-canary"), size("shop-baseline"); got != n || base != n {
			t.Errorf("sized %d: canary %d, baseline %d replicas", n, got, base)
		}
	}
	for _, a := range kube.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch" && a.GetResource().Resource == "deployments" {
			if named, ok := a.(interface{ GetName() string }); ok && named.GetName() == "shop" {
				t.Errorf("the Deployment was written: %s", a.GetVerb())
			}
			if created, ok := a.(interface{ GetObject() runtime.Object }); ok {
				if m, ok := created.GetObject().(metav1.Object); ok && m.GetName() == "shop" {
					t.Errorf("the Deployment was written: %s", a.GetVerb())
				}
			}
		}
	}
}
