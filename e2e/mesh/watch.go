package mesh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	istiolisters "istio.io/client-go/pkg/listers/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// watcher owns the informers the routing table is built from.
type watcher struct {
	kubeFactory      informers.SharedInformerFactory
	istioFactory     istioinformers.SharedInformerFactory
	services         corelisters.ServiceLister
	pods             corelisters.PodLister
	virtualServices  istiolisters.VirtualServiceLister
	destinationRules istiolisters.DestinationRuleLister
	// configMaps hold the flag documents pods read; they feed flag sources
	// directly. They, and the Secrets, reach the routing table through
	// the kubelet's history (kubelet.go), not through a lister.
	configMaps corelisters.ConfigMapLister
	synced     []cache.InformerSynced
}

// newWatcher sets up informers for every namespace, calling onChange after
// any add, update or delete of a routing input has reached the caches (a
// change of a ConfigMap's or a Secret's content among them), and
// onConfigMap after one of a ConfigMap has. k records the pods' starts and
// the ConfigMaps' and Secrets' contents before onChange is called.
func newWatcher(kube kubernetes.Interface, istio istioclient.Interface, onChange func(), onConfigMap func(namespace, name string), k *kubelet) *watcher {
	w := &watcher{
		kubeFactory:  informers.NewSharedInformerFactory(kube, 0),
		istioFactory: istioinformers.NewSharedInformerFactory(istio, 0),
	}
	svc := w.kubeFactory.Core().V1().Services()
	pod := w.kubeFactory.Core().V1().Pods()
	vs := w.istioFactory.InformerFor(&networkingv1.VirtualService{}, virtualServiceInformer)
	dr := w.istioFactory.InformerFor(&networkingv1.DestinationRule{}, destinationRuleInformer)
	cm := w.kubeFactory.Core().V1().ConfigMaps()
	secrets := w.kubeFactory.Core().V1().Secrets()
	w.services, w.pods, w.configMaps = svc.Lister(), pod.Lister(), cm.Lister()
	w.virtualServices = istiolisters.NewVirtualServiceLister(vs.GetIndexer())
	w.destinationRules = istiolisters.NewDestinationRuleLister(dr.GetIndexer())

	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	podHandler := cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if p, ok := obj.(*corev1.Pod); ok {
				k.sawPod(p, initial)
			}
			onChange()
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				k.sawPod(p, false)
			}
			onChange()
		},
		DeleteFunc: func(obj any) {
			if ns, name, ok := namespacedName(obj); ok {
				k.forgetPod(ns, name)
			}
			onChange()
		},
	}
	configMapHandler := configHandler(k, refConfigMap, func(obj any) (configVersion, bool) {
		c, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return configVersion{}, false
		}
		return configMapVersion(c), true
	}, onChange, onConfigMap)
	secretHandler := configHandler(k, refSecret, func(obj any) (configVersion, bool) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return configVersion{}, false
		}
		return secretVersion(s), true
	}, onChange, func(string, string) {})
	for _, h := range []struct {
		inf     cache.SharedIndexInformer
		handler cache.ResourceEventHandler
	}{
		{svc.Informer(), handler}, {pod.Informer(), podHandler}, {vs, handler}, {dr, handler},
		{cm.Informer(), configMapHandler}, {secrets.Informer(), secretHandler},
	} {
		// AddEventHandler only fails on a stopped informer; these are new.
		reg, _ := h.inf.AddEventHandler(h.handler)
		w.synced = append(w.synced, h.inf.HasSynced)
		if reg != nil {
			w.synced = append(w.synced, reg.HasSynced)
		}
	}
	return w
}

// configHandler records the content of the ConfigMaps or Secrets (kind) in
// k, calls onChange when it changed, and then (always) after every event.
func configHandler(k *kubelet, kind string, version func(obj any) (configVersion, bool), onChange func(), then func(namespace, name string)) cache.ResourceEventHandler {
	saw := func(obj any, missing, initial bool) {
		ns, name, ok := namespacedName(obj)
		if !ok {
			return
		}
		var v configVersion
		if !missing {
			if v, ok = version(obj); !ok {
				return
			}
		}
		if k.saw(objectRef{kind, ns, name}, v, missing, initial) {
			onChange()
		}
		then(ns, name)
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { saw(obj, false, initial) },
		UpdateFunc: func(_, obj any) { saw(obj, false, false) },
		DeleteFunc: func(obj any) { saw(obj, true, false) },
	}
}

// namespacedName names the object of an event, a deletion's tombstone
// included.
func namespacedName(obj any) (namespace, name string, ok bool) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return "", "", false
	}
	namespace, name, err = cache.SplitMetaNamespaceKey(key)
	return namespace, name, err == nil
}

// configMap reads a ConfigMap from the cache.
func (w *watcher) configMap(namespace, name string) (*corev1.ConfigMap, error) {
	return w.configMaps.ConfigMaps(namespace).Get(name)
}

// The Istio informers are built here rather than by the generated factory
// so that they list and watch instead of asking for a streamed list
// (WatchListClient, on by default since client-go 0.35). Istio's generated
// informers give a client no way to opt out of streaming, and with a client
// that cannot stream, the Istio fake clientset among them, the reflector
// waits for an initial-events bookmark that never comes and the caches do
// not sync. The emulator's caches are small; streaming buys nothing.
func virtualServiceInformer(c istioclient.Interface, resync time.Duration) cache.SharedIndexInformer {
	return newListWatchInformer(&networkingv1.VirtualService{}, resync, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.NetworkingV1().VirtualServices(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.NetworkingV1().VirtualServices(metav1.NamespaceAll).Watch(ctx, o)
		},
	})
}

func destinationRuleInformer(c istioclient.Interface, resync time.Duration) cache.SharedIndexInformer {
	return newListWatchInformer(&networkingv1.DestinationRule{}, resync, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.NetworkingV1().DestinationRules(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.NetworkingV1().DestinationRules(metav1.NamespaceAll).Watch(ctx, o)
		},
	})
}

// noStreamingLists tells the reflector that the client cannot stream lists.
type noStreamingLists struct{}

func (noStreamingLists) IsWatchListSemanticsUnSupported() bool { return true }

func newListWatchInformer(obj runtime.Object, resync time.Duration, lw *cache.ListWatch) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(
		cache.ToListWatcherWithWatchListSemantics(lw, noStreamingLists{}),
		obj, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
	)
}

// start runs the informers until stop is closed and waits, at most as long
// as ctx allows, for their caches to sync.
func (w *watcher) start(ctx context.Context, stop <-chan struct{}) error {
	w.kubeFactory.Start(stop)
	w.istioFactory.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), w.synced...) {
		return fmt.Errorf("informer caches did not sync: %w", cmp.Or(ctx.Err(), errors.New("stopped")))
	}
	return nil
}

// shutdown waits for the informer goroutines, which end once the stop
// channel given to start is closed.
func (w *watcher) shutdown() {
	w.kubeFactory.Shutdown()
	w.istioFactory.Shutdown()
}

// snapshot lists the caches. The objects are shared with the caches.
func (w *watcher) snapshot() (snapshot, error) {
	var s snapshot
	var err, e error
	s.virtualServices, e = w.virtualServices.List(labels.Everything())
	err = errors.Join(err, e)
	s.destinationRules, e = w.destinationRules.List(labels.Everything())
	err = errors.Join(err, e)
	s.services, e = w.services.List(labels.Everything())
	err = errors.Join(err, e)
	s.pods, e = w.pods.List(labels.Everything())
	err = errors.Join(err, e)
	return s, err
}

// markDirty records that the configuration changed; it never blocks an
// informer.
func (e *Emulator) markDirty() {
	select {
	case e.dirty <- struct{}{}:
	default:
	}
}

// rebuildLoop rebuilds the routing table after changes, batching those
// that arrive within Debounce of each other. A steady stream of changes
// still gets a rebuild every DebounceMax, as istiod caps its debounce. A pod's view of a live volume changes with time alone: the
// table in use says when it next does, and that is a change too.
func (e *Emulator) rebuildLoop(ctx context.Context) {
	quiet := e.opts.Debounce
	maxDelay := e.opts.DebounceMax
	views := time.NewTimer(time.Hour)
	defer views.Stop()
	for {
		if at := e.table.Load().configChangeAt; at.IsZero() {
			views.Stop()
		} else {
			// A little after, so that the clock is past it when the
			// table is built.
			views.Reset(time.Until(at) + time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.dirty:
		case <-views.C:
		}
		first := time.Now()
		timer := time.NewTimer(quiet)
	batch:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-e.dirty:
				if wait := min(quiet, maxDelay-time.Since(first)); wait > 0 {
					timer.Reset(wait)
				} else {
					timer.Stop()
					break batch
				}
			case <-timer.C:
				break batch
			}
		}
		e.rebuild()
	}
}

// rebuild builds a table from the caches and publishes it.
func (e *Emulator) rebuild() {
	s, err := e.watch.snapshot()
	if err != nil {
		// Listing a cache does not fail in practice; keep the old table
		// rather than publish one built from partial data.
		e.log.Error("listing informer caches", "err", err)
		return
	}
	start := time.Now()
	s.config = e.kubelet.snapshot(s.pods, start)
	t, problems := buildTable(s)
	e.flags.attach(t.flags, start)
	e.attachConfigCounters(t)
	for _, pod := range t.comparators {
		// A comparator creates its series when it starts, so that the
		// first count of each is an increase Prometheus can see.
		e.comparisonCounter(pod)
	}
	e.table.Store(t)

	seen := make(map[Problem]bool, len(problems))
	for _, p := range problems {
		seen[p] = true
		if !e.lastProblems[p] {
			e.log.Warn("mesh configuration problem",
				"kind", p.Kind, "namespace", p.Namespace, "name", p.Name, "field", p.Field, "problem", p.Message)
		}
	}
	e.lastProblems = seen
	e.log.Debug("routing table rebuilt",
		"virtualServices", len(s.virtualServices), "destinationRules", len(s.destinationRules),
		"services", len(s.services), "pods", len(s.pods), "problems", len(problems), "took", time.Since(start))
}
