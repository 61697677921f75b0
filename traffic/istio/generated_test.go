package istio_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

var flight = &metav1.OwnerReference{
	APIVersion: "fledge.dev/v1alpha1", Kind: "Flight", Name: "web", UID: "f1",
	Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
}

// generatedVS is the VirtualService the router generates for
// generatedTarget with split stable/canary.
func generatedVS(stable, canary int32) *istionetv1.VirtualService {
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop",
			Labels:          map[string]string{istio.ManagedByLabel: istio.ManagedBy},
			OwnerReferences: []metav1.OwnerReference{*flight},
		},
		Spec: networkingv1.VirtualService{
			Hosts: []string{"web"},
			Http: []*networkingv1.HTTPRoute{{
				Name:  istio.RouteName,
				Route: []*networkingv1.HTTPRouteDestination{weighted("web", stable), weighted("web-canary", canary)},
			}},
		},
	}
}

func ownedByFlight() traffic.Target {
	t := generatedTarget()
	t.Owner = flight
	return t
}

func getVS(t *testing.T, client *fake.Clientset, name string) *istionetv1.VirtualService {
	t.Helper()
	vs, err := client.NetworkingV1().VirtualServices("shop").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func wantVS(t *testing.T, want, got *istionetv1.VirtualService) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("virtualservice (-want +got):\n%s", diff)
	}
}

func TestEnsureCreatesALabelledOwnedVirtualServiceAtAllStable(t *testing.T) {
	client := fake.NewSimpleClientset()
	if err := istio.New(client).Ensure(t.Context(), ownedByFlight()); err != nil {
		t.Fatal(err)
	}
	wantVS(t, generatedVS(100, 0), getVS(t, client, "web"))
}

func TestEnsureRepairsAnEditedGeneratedVirtualService(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*istionetv1.VirtualService)
		want *istionetv1.VirtualService
		// routes is set when the edit leaves routing as generated, so
		// Weights can still read it.
		routes bool
	}{{
		name: "a gateway, a match and a timeout are removed and the split is kept",
		edit: func(vs *istionetv1.VirtualService) {
			vs.Spec.Gateways = []string{"shop/public"}
			vs.Spec.Http[0].Match = []*networkingv1.HTTPMatchRequest{{Uri: &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: "/api"}}}}
			vs.Spec.Http[0].Timeout = durationpb.New(time.Second)
		},
		want: generatedVS(70, 30),
	}, {
		name: "another host and an extra route are removed",
		edit: func(vs *istionetv1.VirtualService) {
			vs.Spec.Hosts = append(vs.Spec.Hosts, "web.example.com")
			vs.Spec.Http = append(vs.Spec.Http, &networkingv1.HTTPRoute{Name: "extra", Route: []*networkingv1.HTTPRouteDestination{dest("other")}})
		},
		want: generatedVS(70, 30),
	}, {
		name: "weights edited into an invalid split go back to all stable",
		edit: func(vs *istionetv1.VirtualService) { vs.Spec.Http[0].Route[1].Weight = 50 },
		want: generatedVS(100, 0),
	}, {
		name: "a destination edited to another host goes back to all stable",
		edit: func(vs *istionetv1.VirtualService) { vs.Spec.Http[0].Route[1].Destination.Host = "web-v2" },
		want: generatedVS(100, 0),
	}, {
		name: "a missing owner is put back and labels others added are kept",
		edit: func(vs *istionetv1.VirtualService) {
			vs.OwnerReferences = nil
			vs.Labels["team"] = "shop"
		},
		want: func() *istionetv1.VirtualService {
			vs := generatedVS(70, 30)
			vs.Labels["team"] = "shop"
			return vs
		}(),
		routes: true,
	}, {
		name: "the owner reference of a Flight since re-created is replaced",
		edit: func(vs *istionetv1.VirtualService) {
			stale := *flight
			stale.UID = "f0"
			vs.OwnerReferences = []metav1.OwnerReference{stale, {APIVersion: "v1", Kind: "ConfigMap", Name: "keep", UID: "c1"}}
		},
		want: func() *istionetv1.VirtualService {
			vs := generatedVS(70, 30)
			vs.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "keep", UID: "c1"}, *flight}
			return vs
		}(),
		routes: true,
	}} {
		t.Run(c.name, func(t *testing.T) {
			edited := generatedVS(70, 30)
			c.edit(edited)
			client := fake.NewSimpleClientset(edited)
			r := istio.New(client)
			tg := ownedByFlight()

			// Weights refuses to vouch for edited routing...
			if _, err := r.Weights(t.Context(), tg); c.routes {
				if err != nil {
					t.Errorf("Weights: %v", err)
				}
			} else if err == nil {
				t.Error("Weights of an edited VirtualService succeeded, want an error")
			} else if errors.Is(err, traffic.ErrConflict) {
				t.Errorf("Weights: %v; want a plain error, since Ensure repairs it", err)
			}
			// ...and Ensure repairs it.
			if err := r.Ensure(t.Context(), tg); err != nil {
				t.Fatal(err)
			}
			wantVS(t, c.want, getVS(t, client, "web"))
			want := traffic.Weights{Stable: c.want.Spec.Http[0].Route[0].Weight, Canary: c.want.Spec.Http[0].Route[1].Weight}
			if got, err := r.Weights(t.Context(), tg); err != nil || got != want {
				t.Errorf("Weights after repair = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

func TestGeneratedCallsThatChangeNothingWriteNothing(t *testing.T) {
	client := fake.NewSimpleClientset(generatedVS(60, 40))
	r := istio.New(client)
	tg := ownedByFlight()
	if err := r.Ensure(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	if err := r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 60, Canary: 40}); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" {
			t.Errorf("unexpected %s", v)
		}
	}
}

func TestGeneratedConflicts(t *testing.T) {
	other := func(name string, hosts []string, gateways ...string) *istionetv1.VirtualService {
		return &istionetv1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: networkingv1.VirtualService{Hosts: hosts, Gateways: gateways, Http: []*networkingv1.HTTPRoute{
				{Route: []*networkingv1.HTTPRouteDestination{dest("web")}},
			}},
		}
	}
	for _, c := range []struct {
		name     string
		existing runtime.Object
		wantErr  string // "" for no conflict
	}{{
		name:     "another VirtualService routes the host by its short name",
		existing: other("web-routes", []string{"api", "web"}),
		wantErr:  "virtualservice shop/web-routes: spec.hosts[1]: already routes web.shop.svc.cluster.local",
	}, {
		name:     "another VirtualService routes the host by its full name, for the mesh among gateways",
		existing: other("web-routes", []string{"WEB.shop.svc.cluster.local."}, "shop/public", "mesh"),
		wantErr:  "virtualservice shop/web-routes: spec.hosts[0]: already routes web.shop.svc.cluster.local",
	}, {
		name:     "a VirtualService named like the app is not fledge's",
		existing: func() runtime.Object { vs := other("web", []string{"web"}); return vs }(),
		wantErr:  "virtualservice shop/web: metadata.labels: exists without app.kubernetes.io/managed-by=fledge",
	}, {
		name:     "a gateway-only VirtualService for the host does not compete with sidecar routing",
		existing: other("web-ingress", []string{"web"}, "shop/public"),
	}, {
		name:     "a wildcard loses to an exact host in Istio, so it does not compete",
		existing: other("catch-all", []string{"*.shop.svc.cluster.local"}),
	}, {
		name:     "a namespace-qualified short name is another host to Istio",
		existing: other("web-routes", []string{"web.shop"}),
	}} {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cached=%v", c.name, cached), func(t *testing.T) {
				client := fake.NewSimpleClientset(c.existing)
				r := istio.New(client)
				if cached {
					r = istio.New(client, istio.WithCache(t.Context().Done()))
				}
				tg := ownedByFlight()
				for name, call := range map[string]func() error{
					"Ensure":     func() error { return r.Ensure(t.Context(), tg) },
					"SetWeights": func() error { return r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 90, Canary: 10}) },
				} {
					err := call()
					switch {
					case c.wantErr == "" && err != nil:
						t.Errorf("%s: %v, want no conflict", name, err)
					case c.wantErr == "":
					case !errors.Is(err, traffic.ErrConflict):
						t.Errorf("%s: %v, want a conflict", name, err)
					case !strings.Contains(err.Error(), c.wantErr):
						t.Errorf("%s: %q\ndoes not say %q", name, err, c.wantErr)
					}
				}
				if c.wantErr == "" {
					return
				}
				for _, a := range client.Actions() {
					if v := a.GetVerb(); v != "get" && v != "list" && v != "watch" {
						t.Errorf("unexpected %s despite the conflict", v)
					}
				}
			})
		}
	}
}

// With a cache, adopting many apps of a namespace lists its
// VirtualServices once, not once per app (adoption stays O(N)), and a
// VirtualService another party creates later is still found in conflict.
func TestTheCachedConflictCheckListsOncePerNamespace(t *testing.T) {
	client := fake.NewSimpleClientset()
	r := istio.New(client, istio.WithCache(t.Context().Done()))
	target := func(i int) traffic.Target {
		tg := ownedByFlight()
		tg.Name, tg.Host, tg.Stable, tg.Canary = fmt.Sprintf("app%d", i), fmt.Sprintf("app%d", i), fmt.Sprintf("app%d", i), fmt.Sprintf("app%d-canary", i)
		return tg
	}
	for i := range 50 {
		if err := r.Ensure(t.Context(), target(i)); err != nil {
			t.Fatal(err)
		}
		if err := r.SetWeights(t.Context(), target(i), traffic.Weights{Stable: 90, Canary: 10}); err != nil {
			t.Fatal(err)
		}
	}
	lists := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" {
			lists++
		}
	}
	if lists != 1 {
		t.Errorf("%d LISTs of VirtualServices for 50 apps' Ensure and SetWeights, want 1", lists)
	}

	theirs := &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "team-routes", Namespace: "shop"},
		Spec:       networkingv1.VirtualService{Hosts: []string{"app7"}, Http: []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{dest("app7")}}}},
	}
	if _, err := client.NetworkingV1().VirtualServices("shop").Create(t.Context(), theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		return errors.Is(r.SetWeights(ctx, target(7), traffic.Weights{Stable: 80, Canary: 20}), traffic.ErrConflict), nil
	})
	if err != nil {
		t.Errorf("a VirtualService created later for app7's host was never found in conflict: %v", err)
	}
}

func TestReleaseDeletesOnlyWhatFledgeGenerated(t *testing.T) {
	t.Run("the generated VirtualService is deleted, guarded by its UID and version", func(t *testing.T) {
		vs := generatedVS(50, 50)
		vs.UID, vs.ResourceVersion = "u1", "12"
		client := fake.NewSimpleClientset(vs)
		if err := istio.New(client).Release(t.Context(), ownedByFlight()); err != nil {
			t.Fatal(err)
		}
		if _, err := client.NetworkingV1().VirtualServices("shop").Get(t.Context(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get after Release: %v, want not found", err)
		}
		var deletes []metav1.Preconditions
		for _, a := range client.Actions() {
			if d, ok := a.(k8stesting.DeleteActionImpl); ok {
				deletes = append(deletes, *d.DeleteOptions.Preconditions)
			}
		}
		want := []metav1.Preconditions{{UID: ptr.To[types.UID]("u1"), ResourceVersion: ptr.To("12")}}
		if diff := cmp.Diff(want, deletes); diff != "" {
			t.Errorf("delete preconditions (-want +got):\n%s", diff)
		}
	})
	t.Run("a VirtualService fledge does not manage is left alone", func(t *testing.T) {
		vs := generatedVS(50, 50)
		vs.Labels = nil
		client := fake.NewSimpleClientset(vs)
		if err := istio.New(client).Release(t.Context(), ownedByFlight()); err != nil {
			t.Fatal(err)
		}
		wantVS(t, vs, getVS(t, client, "web"))
	})
}
