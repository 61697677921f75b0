package istio_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// lagging is a fake clientset whose VirtualService watch delivers only what
// the test sends on it: the router's cache lags its writes as long as the
// test wants. Unlike the plain fake, it gives every write a new
// resourceVersion, as the API server does.
func lagging(t *testing.T, objects ...runtime.Object) (*fake.Clientset, *watch.FakeWatcher) {
	client := fake.NewSimpleClientset(objects...)
	version := 100
	for _, verb := range []string{"create", "update"} {
		client.PrependReactor(verb, "virtualservices", func(a k8stesting.Action) (bool, runtime.Object, error) {
			version++
			a.(interface{ GetObject() runtime.Object }).GetObject().(*istionetv1.VirtualService).ResourceVersion = strconv.Itoa(version)
			return false, nil, nil
		})
	}
	w := watch.NewFakeWithChanSize(16, false)
	client.PrependWatchReactor("virtualservices", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, w, nil
	})
	return client, w
}

func gets(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "virtualservices" {
			n++
		}
	}
	return n
}

func weightsAre(t *testing.T, r *istio.Router, want traffic.Weights) {
	t.Helper()
	got, err := r.Weights(t.Context(), generatedTarget())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Weights = %+v, want %+v", got, want)
	}
}

// With a cache, a look reads the routing without asking the API server,
// and a read right after the router's own write sees that write even while
// the cache does not yet: a lagging cache must never look like someone
// setting the weights back.
func TestCachedReadsSeeTheRoutersOwnWritesAtOnce(t *testing.T) {
	vs := generatedVS(90, 10)
	vs.ResourceVersion = "1"
	client, w := lagging(t, vs)
	r := istio.New(client, istio.WithCache(t.Context().Done()))

	weightsAre(t, r, traffic.Weights{Stable: 90, Canary: 10})
	for range 10 {
		weightsAre(t, r, traffic.Weights{Stable: 90, Canary: 10})
	}
	if n := gets(client); n != 0 {
		t.Errorf("%d GETs for 11 reads of a cached VirtualService, want 0", n)
	}

	// The router's write; the watch has not delivered it.
	if err := r.SetWeights(t.Context(), generatedTarget(), traffic.Weights{Stable: 50, Canary: 50}); err != nil {
		t.Fatal(err)
	}
	before := gets(client)
	weightsAre(t, r, traffic.Weights{Stable: 50, Canary: 50})
	if gets(client) == before {
		t.Error("a read while the cache lags the router's write did not ask the API server")
	}

	// The watch delivers it: reads are the cache's again.
	written, err := client.NetworkingV1().VirtualServices("shop").Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Modify(written)
	waitFor(t, func() bool {
		n := gets(client)
		_, err := r.Weights(t.Context(), generatedTarget())
		return err == nil && gets(client) == n
	})
	before = gets(client)
	for range 10 {
		weightsAre(t, r, traffic.Weights{Stable: 50, Canary: 50})
	}
	if n := gets(client) - before; n != 0 {
		t.Errorf("%d GETs once the cache showed the write, want 0", n)
	}
}

// Another writer's change after the router's own write is seen at the
// next read: the API server read shows it, and from then on the cache does.
func TestCachedReadsSeeAnotherWritersChangeAfterTheRoutersOwn(t *testing.T) {
	vs := generatedVS(90, 10)
	vs.ResourceVersion = "1"
	client, w := lagging(t, vs)
	r := istio.New(client, istio.WithCache(t.Context().Done()))
	weightsAre(t, r, traffic.Weights{Stable: 90, Canary: 10})
	if err := r.SetWeights(t.Context(), generatedTarget(), traffic.Weights{Stable: 50, Canary: 50}); err != nil {
		t.Fatal(err)
	}
	// Someone sets it back before the watch delivers anything.
	theirs, err := client.NetworkingV1().VirtualServices("shop").Update(t.Context(), generatedVS(100, 0), metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	weightsAre(t, r, traffic.Weights{Stable: 100, Canary: 0})
	w.Modify(theirs)
	waitFor(t, func() bool {
		n := gets(client)
		got, err := r.Weights(t.Context(), generatedTarget())
		return err == nil && got.Stable == 100 && gets(client) == n
	})
}

// A delete is seen at once too: released routing reads as plain while the
// cache still holds the VirtualService.
func TestCachedReadsSeeTheRoutersOwnDeleteAtOnce(t *testing.T) {
	vs := generatedVS(70, 30)
	vs.ResourceVersion = "1"
	client, _ := lagging(t, vs)
	r := istio.New(client, istio.WithCache(t.Context().Done()))
	weightsAre(t, r, traffic.Weights{Stable: 70, Canary: 30})
	if err := r.Release(t.Context(), generatedTarget()); err != nil {
		t.Fatal(err)
	}
	weightsAre(t, r, traffic.Weights{Stable: 100})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatal("never happened")
	}
}
