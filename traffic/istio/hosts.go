package istio

import (
	"context"
	"fmt"
	"sync"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned"
	istiolisters "istio.io/client-go/pkg/listers/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Option configures a Router.
type Option func(*Router)

// WithCache makes the conflict check (does another VirtualService of the
// namespace route the target's host?) read a watch-fed cache of the
// namespace's VirtualServices, started the first time the namespace is
// routed and stopped when stop closes, instead of LISTing them on every
// routing write: with N apps in a namespace, adopting them all costs N
// LISTs of N objects without it. The weights themselves are always read
// from the API server. Needs the watch verb on virtualservices.
func WithCache(stop <-chan struct{}) Option {
	return func(r *Router) {
		r.others = &namespaceCaches{client: r.client, stop: stop, byNamespace: map[string]*namespaceCache{}}
	}
}

// namespaceCaches are the VirtualService caches of the namespaces routed
// so far.
type namespaceCaches struct {
	client versioned.Interface
	stop   <-chan struct{}

	mu          sync.Mutex
	byNamespace map[string]*namespaceCache
}

type namespaceCache struct {
	informer cache.SharedIndexInformer
	lister   istiolisters.VirtualServiceNamespaceLister
}

// list returns the cached VirtualServices of namespace ns, starting its
// cache first if need be; it waits for the cache's first sync at most as
// long as ctx allows.
func (n *namespaceCaches) list(ctx context.Context, ns string) ([]*istionetv1.VirtualService, error) {
	n.mu.Lock()
	c, ok := n.byNamespace[ns]
	if !ok {
		informer := cache.NewSharedIndexInformer(
			// List and watch, not a streamed list: Istio's generated
			// clients (its fake among them) cannot say they do not
			// stream, and a reflector waiting for a stream's bookmark
			// that never comes never syncs. A namespace's
			// VirtualServices are few: streaming buys nothing.
			cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return n.client.NetworkingV1().VirtualServices(ns).List(ctx, o)
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					return n.client.NetworkingV1().VirtualServices(ns).Watch(ctx, o)
				},
			}, noStreamingLists{}),
			&istionetv1.VirtualService{}, 10*time.Minute,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		)
		_ = informer.SetTransform(func(obj any) (any, error) {
			if m, err := meta.Accessor(obj); err == nil {
				m.SetManagedFields(nil) // never read here; often most of the object
			}
			return obj, nil
		})
		c = &namespaceCache{informer: informer, lister: istiolisters.NewVirtualServiceLister(informer.GetIndexer()).VirtualServices(ns)}
		go informer.RunWithContext(wait.ContextForChannel(n.stop))
		n.byNamespace[ns] = c
	}
	n.mu.Unlock()
	if !c.informer.HasSynced() {
		ctx, cancel := context.WithTimeout(ctx, firstSync)
		defer cancel()
		err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
			return c.informer.HasSynced(), nil
		})
		if err != nil {
			return nil, fmt.Errorf("virtualservices in %s: the cache has not synced (can fledge list and watch them there?): %w", ns, err)
		}
	}
	return c.lister.List(labels.Everything())
}

// firstSync bounds the wait for a namespace cache's first sync.
const firstSync = 30 * time.Second

// noStreamingLists tells the reflector that the client cannot stream lists.
type noStreamingLists struct{}

func (noStreamingLists) IsWatchListSemanticsUnSupported() bool { return true }
