package istio

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned"
	istiolisters "istio.io/client-go/pkg/listers/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// WithCache makes the router read VirtualServices from a watch-fed cache
// of each namespace it routes, started the first time the namespace is
// routed and stopped when stop closes, instead of from the API server on
// every call: the conflict check (does another VirtualService of the
// namespace route the target's host?) would otherwise LIST the namespace
// on every routing write (with N apps in a namespace, adopting them all
// costs N LISTs of N objects), and every look would GET the routing it
// reads back.
//
// Reads see the router's own writes at once: until the cache holds the
// resourceVersion the router last wrote (or no longer holds what it
// deleted), the object is read from the API server instead, so a lagging
// cache is never taken for someone else setting the weights back. Another
// writer's change is seen once the watch delivers it, as any informer-fed
// controller sees it. A retry after a conflict always reads the API
// server. Needs the list and watch verbs on virtualservices.
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
	synced func() bool
	lister istiolisters.VirtualServiceNamespaceLister
}

// list returns the cached VirtualServices of namespace ns, starting its
// cache first if need be; it waits for the cache's first sync at most as
// long as ctx allows.
func (n *namespaceCaches) list(ctx context.Context, ns string) ([]*istionetv1.VirtualService, error) {
	c, err := n.of(ctx, ns)
	if err != nil {
		return nil, err
	}
	return c.lister.List(labels.Everything())
}

// get returns the cached VirtualService ns/name (shared: not to be
// changed), and whether there is one.
func (n *namespaceCaches) get(ctx context.Context, ns, name string) (*istionetv1.VirtualService, bool, error) {
	c, err := n.of(ctx, ns)
	if err != nil {
		return nil, false, err
	}
	vs, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	return vs, err == nil, err
}

// of returns namespace ns's cache, synced, starting it if need be.
func (n *namespaceCaches) of(ctx context.Context, ns string) (*namespaceCache, error) {
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
		c = &namespaceCache{synced: informer.HasSynced, lister: istiolisters.NewVirtualServiceLister(informer.GetIndexer()).VirtualServices(ns)}
		go informer.RunWithContext(wait.ContextForChannel(n.stop))
		n.byNamespace[ns] = c
	}
	n.mu.Unlock()
	if !c.synced() {
		ctx, cancel := context.WithTimeout(ctx, firstSync)
		defer cancel()
		err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
			return c.synced(), nil
		})
		if err != nil {
			return nil, fmt.Errorf("virtualservices in %s: the cache has not synced (can fledge list and watch them there?): %w", ns, err)
		}
	}
	return c, nil
}

// read returns VirtualService ns/name as the router should act on it: from
// the cache, unless the router wrote it since and the cache does not show
// that write yet, or fresh is set (a retry after a conflict), or the router
// has no cache; then from the API server. A missing one is a NotFound
// error, as from the API server.
func (r *Router) read(ctx context.Context, ns, name string, fresh bool) (*istionetv1.VirtualService, error) {
	live := func() (*istionetv1.VirtualService, error) {
		return r.client.NetworkingV1().VirtualServices(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if r.others == nil || fresh {
		return live()
	}
	cached, found, err := r.others.get(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	key := ns + "/" + name
	r.mu.Lock()
	w, pending := r.wrote[key]
	r.mu.Unlock()
	if pending {
		if w.shownBy(cached, found) {
			r.seen(key, w) // the cache has caught up
		} else {
			vs, err := live()
			if !w.shownBy(vs, err == nil) && (err == nil || apierrors.IsNotFound(err)) {
				// Someone else wrote (or deleted) it since: the cache
				// will never show the router's write; it will show theirs.
				r.seen(key, w)
			}
			return vs, err
		}
	}
	if !found {
		return nil, apierrors.NewNotFound(istionetv1.SchemeGroupVersion.WithResource("virtualservices").GroupResource(), name)
	}
	return cached.DeepCopy(), nil
}

// write is one of the router's own writes: the object as written, nil for
// a delete.
type write struct{ vs *istionetv1.VirtualService }

// shownBy reports whether vs (found or not) is this write's result: the
// same resourceVersion, or, from a client that sets none (a fake), the
// same labels, owners and spec.
func (w write) shownBy(vs *istionetv1.VirtualService, found bool) bool {
	switch {
	case w.vs == nil || !found:
		return w.vs == nil && !found
	case w.vs.ResourceVersion != "":
		return vs.ResourceVersion == w.vs.ResourceVersion
	}
	return maps.Equal(vs.Labels, w.vs.Labels) && slices.Equal(vs.OwnerReferences, w.vs.OwnerReferences) && proto.Equal(&vs.Spec, &w.vs.Spec)
}

// noteWrite records the router's own write of ns/name (vs nil for a
// delete), until the cache shows it.
func (r *Router) noteWrite(vs *istionetv1.VirtualService, ns, name string) {
	if r.others == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wrote == nil {
		r.wrote = map[string]write{}
	}
	r.wrote[ns+"/"+name] = write{vs}
}

// seen forgets a write the cache has caught up with (or that another
// write superseded), unless the router wrote again meanwhile.
func (r *Router) seen(key string, w write) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wrote[key].vs == w.vs {
		delete(r.wrote, key)
	}
}

// firstSync bounds the wait for a namespace cache's first sync.
const firstSync = 30 * time.Second

// noStreamingLists tells the reflector that the client cannot stream lists.
type noStreamingLists struct{}

func (noStreamingLists) IsWatchListSemanticsUnSupported() bool { return true }
