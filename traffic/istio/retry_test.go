package istio_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

var virtualservices = istionetv1.SchemeGroupVersion.WithResource("virtualservices")

// editBeforePatch makes someone else change the stored VirtualService
// (a new resourceVersion, and whatever edit does) just before each of the
// router's first n patches reaches the fake: the race the guarded patch is
// for. It returns a counter of patches seen.
func editBeforePatch(t *testing.T, client *fake.Clientset, n int, edit func(*istionetv1.VirtualService)) *int {
	patches := 0
	client.PrependReactor("patch", "virtualservices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if patches++; patches > n {
			return false, nil, nil
		}
		obj, err := client.Tracker().Get(virtualservices, "shop", "web-routes")
		if err != nil {
			t.Fatal(err)
		}
		vs := obj.(*istionetv1.VirtualService).DeepCopy()
		vs.ResourceVersion = fmt.Sprint(100 + patches)
		edit(vs)
		if err := client.Tracker().Update(virtualservices, vs, "shop"); err != nil {
			t.Fatal(err)
		}
		return false, nil, nil // the default reactor now applies the stale patch
	})
	return &patches
}

func TestAConcurrentEditIsReReadAndKept(t *testing.T) {
	client := fake.NewSimpleClientset(teamRoutes())
	patches := editBeforePatch(t, client, 1, func(vs *istionetv1.VirtualService) {
		vs.Spec.Http[0].Timeout = durationpb.New(3 * time.Second)
	})
	w := traffic.Weights{Stable: 80, Canary: 20}
	if err := istio.New(client).SetWeights(t.Context(), ownedTarget(), w); err != nil {
		t.Fatal(err)
	}
	if *patches != 2 {
		t.Errorf("%d patches, want 2: the stale one, then one from a fresh read", *patches)
	}
	want := teamRoutes()
	want.ResourceVersion = "101"
	want.Spec.Http[0].Timeout = durationpb.New(3 * time.Second)
	canary := teamRoutes().Spec.Http[1].Route[0]
	canary.Destination.Host, canary.Destination.Subset, canary.Weight = "web-canary", "", 20
	stable := teamRoutes().Spec.Http[1].Route[0]
	stable.Weight = 80
	wantSpec(t, client, withRoute(want, 1, stable, canary))
}

func TestAConcurrentEditThatBreaksTheRouteIsAConflict(t *testing.T) {
	client := fake.NewSimpleClientset(teamRoutes())
	editBeforePatch(t, client, 1, func(vs *istionetv1.VirtualService) {
		vs.Spec.Http[1].Name = "main" // renamed by its owner meanwhile
	})
	err := istio.New(client).SetWeights(t.Context(), ownedTarget(), traffic.Weights{Stable: 80, Canary: 20})
	if want := `no route named "primary"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("SetWeights: %v, want an error saying %q", err, want)
	}
}

func TestRetriesStopAfterAFewConcurrentEdits(t *testing.T) {
	client := fake.NewSimpleClientset(teamRoutes())
	patches := editBeforePatch(t, client, 1000, func(*istionetv1.VirtualService) {})
	err := istio.New(client).SetWeights(t.Context(), ownedTarget(), traffic.Weights{Stable: 80, Canary: 20})
	if err == nil || !strings.Contains(err.Error(), "gave up after 5 concurrent edits") {
		t.Fatalf("SetWeights: %v, want it to give up", err)
	}
	if *patches != 5 {
		t.Errorf("%d patches, want 5", *patches)
	}
}

func TestAFailedPatchWithNothingChangedIsNotRetried(t *testing.T) {
	client := fake.NewSimpleClientset(teamRoutes())
	patches := 0
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "networking.istio.io", Resource: "virtualservices"}, "web-routes", fmt.Errorf("RBAC"))
	client.PrependReactor("patch", "virtualservices", func(k8stesting.Action) (bool, runtime.Object, error) {
		patches++
		return true, nil, forbidden
	})
	err := istio.New(client).SetWeights(t.Context(), ownedTarget(), traffic.Weights{Stable: 80, Canary: 20})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("SetWeights: %v, want the Forbidden error", err)
	}
	if want := `virtualservice shop/web-routes: spec.http[1] ("primary").route: patch: `; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if patches != 1 {
		t.Errorf("%d patches, want 1", patches)
	}
}

func TestAGeneratedVirtualServiceUpdatedMeanwhileIsReReadAndUpdated(t *testing.T) {
	client := fake.NewSimpleClientset(generatedVS(100, 0))
	updates := 0
	client.PrependReactor("update", "virtualservices", func(k8stesting.Action) (bool, runtime.Object, error) {
		if updates++; updates == 1 {
			return true, nil, apierrors.NewConflict(virtualservices.GroupResource(), "web", fmt.Errorf("the object has been modified"))
		}
		return false, nil, nil
	})
	r := istio.New(client)
	w := traffic.Weights{Stable: 50, Canary: 50}
	if err := r.SetWeights(t.Context(), ownedByFlight(), w); err != nil {
		t.Fatal(err)
	}
	if updates != 2 {
		t.Errorf("%d updates, want 2", updates)
	}
	wantVS(t, generatedVS(50, 50), getVS(t, client, "web"))
}

// A writer that loses the right to write while its write is refused for a
// conflict (a leader paused mid-call, past its Lease, whose successor
// wrote meanwhile) writes nothing on the retry: every write asks the
// context's fence first, on the generated VirtualService and on a team's
// own.
func TestARetryAfterAConflictAsksTheFenceAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		verb   string
		client func() *fake.Clientset
		target traffic.Target
	}{
		{"generated", "update", func() *fake.Clientset { return fake.NewSimpleClientset(generatedVS(100, 0)) }, ownedByFlight()},
		{"team's own", "patch", func() *fake.Clientset {
			return fake.NewSimpleClientset(userOwned(&networkingv1.HTTPRoute{Name: "primary", Route: []*networkingv1.HTTPRouteDestination{dest("web")}}))
		}, ownedTarget()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client()
			lost := errors.New("the Lease was last renewed more than 3s ago")
			var fenceErr error
			writes := 0
			client.PrependReactor(tc.verb, "virtualservices", func(a k8stesting.Action) (bool, runtime.Object, error) {
				writes++
				fenceErr = lost // paused past the Lease while this write was refused
				// ... because the successor wrote: a new resourceVersion.
				name := "web"
				if tc.target.VirtualService != "" {
					name = tc.target.VirtualService
				}
				obj, err := client.Tracker().Get(virtualservices, "shop", name)
				if err != nil {
					t.Fatal(err)
				}
				vs := obj.(*istionetv1.VirtualService).DeepCopy()
				vs.ResourceVersion = fmt.Sprint(200 + writes)
				if err := client.Tracker().Update(virtualservices, vs, "shop"); err != nil {
					t.Fatal(err)
				}
				return true, nil, apierrors.NewConflict(virtualservices.GroupResource(), "web", fmt.Errorf("the object has been modified"))
			})
			ctx := traffic.WithFence(t.Context(), func() error { return fenceErr })
			err := istio.New(client).SetWeights(ctx, tc.target, traffic.Weights{Stable: 50, Canary: 50})
			if !errors.Is(err, lost) {
				t.Errorf("SetWeights: %v, want the fence's answer", err)
			}
			if writes != 1 {
				t.Errorf("%d writes sent, want 1: the retry must ask the fence", writes)
			}
		})
	}
}
