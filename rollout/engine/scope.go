package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/listers"
	"k8s.io/client-go/tools/cache"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/client/clientset/versioned"
	fledgeinformers "github.com/fledgehq/fledge/rollout/client/informers/externalversions"
)

// The namespaces fledge acts in. Cluster-wide, one set of informers
// watches every namespace; namespaced (the default install), one set per
// listed namespace, each started once fledge may read there. fledge's
// memory then grows with the workloads of those namespaces, not with the
// cluster, and its RBAC is a RoleBinding per namespace.

// AllNamespaces is ControllerConfig.Namespaces for a cluster-wide engine.
var AllNamespaces = []string{metav1.NamespaceAll}

// DefaultNamespaceRetry is how often a namespace fledge may not read yet
// is tried again (ControllerConfig.NamespaceRetry).
const DefaultNamespaceRetry = 30 * time.Second

// scope is the informer caches of one namespace ("" for all).
type scope struct {
	namespace   string
	kube        informers.SharedInformerFactory
	flights     fledgeinformers.SharedInformerFactory
	deployments listers.ResourceIndexer[*appsv1.Deployment]
	replicaSets listers.ResourceIndexer[*appsv1.ReplicaSet]
	services    listers.ResourceIndexer[*corev1.Service]
	flightList  listers.ResourceIndexer[*v1alpha1.Flight]
	// autoscalers are the namespace's HorizontalPodAutoscalers, indexed
	// by the Deployment they target (autoscalerTargetIndex).
	autoscalers cache.Indexer
	// flightIndex indexes the Flights by the release flag documents
	// they link (flagDocIndex).
	flightIndex cache.Indexer
	// deploymentIndex indexes the Deployments by the ConfigMaps and
	// Secrets their templates read (configRefIndex).
	deploymentIndex cache.Indexer
	// configMaps and secrets are the namespace's, their content dropped
	// (leanConfig), indexed by the Flight a copy is of (configCopyIndex);
	// secrets is nil where fledge may not list Secrets, and secretsWhy
	// says so.
	configMaps, secrets cache.Indexer
	secretsWhy          string
	synced              []cache.InformerSynced
}

// flagDocIndex indexes Flights by "namespace/configmap/key" of every
// release flag document in their status: a Flight stepping flags finds
// the others that step flags of the same documents without a scan of the
// namespace.
const flagDocIndex = "fledge.dev/flag-docs"

func flagDocsOf(obj any) ([]string, error) {
	f, ok := obj.(*v1alpha1.Flight)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, fl := range f.Status.Flags {
		out = append(out, f.Namespace+"/"+rollout.FlagDocKey(fl.ConfigMap, fl.Key))
	}
	return out, nil
}

// autoscalerTargetIndex indexes HorizontalPodAutoscalers by the
// "namespace/name" of the Deployment they target (those that target anything else are not
// indexed): a Flight finds its Deployment's without a scan.
const autoscalerTargetIndex = "fledge.dev/autoscaler-target"

func autoscalerTarget(obj any) ([]string, error) {
	if h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
		if name, ok := targetDeployment(h); ok {
			return []string{h.Namespace + "/" + name}, nil
		}
	}
	return nil, nil
}

// targetDeployment is the name of the Deployment an autoscaler targets, if
// it targets one (apps, any version).
func targetDeployment(h *autoscalingv2.HorizontalPodAutoscaler) (string, bool) {
	ref := h.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != appsv1.GroupName || ref.Kind != "Deployment" || ref.Name == "" {
		return "", false
	}
	return ref.Name, true
}

// scopes are the caches of every namespace fledge acts in, and what it
// needs to add one.
type scopes struct {
	kube   kubernetes.Interface
	fledge versioned.Interface
	resync time.Duration
	// handlers are added to every scope's Deployment and Flight informers.
	onDeployment, onFlight cache.ResourceEventHandler
	// onReplicaSet is added to every scope's ReplicaSet informer.
	onReplicaSet cache.ResourceEventHandler
	// onAutoscaler is added to every scope's HorizontalPodAutoscaler
	// informer, onConfig to its ConfigMap and Secret informers.
	onAutoscaler, onConfig cache.ResourceEventHandler

	mu sync.RWMutex
	// byNamespace holds the scopes whose caches have synced.
	byNamespace map[string]*scope
	// waiting are the namespaces fledge may not read yet, with why.
	waiting map[string]string
}

func (s *scopes) newScope(ns, secretsWhy string) *scope {
	kube := informers.NewSharedInformerFactoryWithOptions(s.kube, s.resync, informers.WithNamespace(ns), informers.WithTransform(lean))
	flights := fledgeinformers.NewSharedInformerFactoryWithOptions(s.fledge, s.resync, fledgeinformers.WithNamespace(ns), fledgeinformers.WithTransform(lean))
	dep := kube.Apps().V1().Deployments().Informer()
	rs := kube.Apps().V1().ReplicaSets().Informer()
	svc := kube.Core().V1().Services().Informer()
	fl := flights.Fledge().V1alpha1().Flights().Informer()
	hpa := kube.Autoscaling().V2().HorizontalPodAutoscalers().Informer()
	cm := kube.Core().V1().ConfigMaps().Informer()
	_ = fl.AddIndexers(cache.Indexers{flagDocIndex: flagDocsOf})                 // before Start: cannot fail
	_ = hpa.AddIndexers(cache.Indexers{autoscalerTargetIndex: autoscalerTarget}) // likewise
	_ = dep.AddIndexers(cache.Indexers{configRefIndex: deploymentConfigRefs})    // likewise
	_ = cm.AddIndexers(cache.Indexers{configCopyIndex: configCopyOwner})         // likewise
	_, _ = dep.AddEventHandler(s.onDeployment)
	_, _ = fl.AddEventHandler(s.onFlight)
	if s.onReplicaSet != nil {
		_, _ = rs.AddEventHandler(s.onReplicaSet)
	}
	if s.onAutoscaler != nil {
		_, _ = hpa.AddEventHandler(s.onAutoscaler)
	}
	synced := []cache.InformerSynced{dep.HasSynced, rs.HasSynced, svc.HasSynced, fl.HasSynced, hpa.HasSynced, cm.HasSynced}
	var secrets cache.Indexer
	if secretsWhy == "" {
		sec := kube.Core().V1().Secrets().Informer()
		_ = sec.AddIndexers(cache.Indexers{configCopyIndex: configCopyOwner})
		if s.onConfig != nil {
			_, _ = sec.AddEventHandler(s.onConfig)
		}
		secrets = sec.GetIndexer()
		synced = append(synced, sec.HasSynced)
	}
	if s.onConfig != nil {
		_, _ = cm.AddEventHandler(s.onConfig)
	}
	return &scope{
		namespace: ns, kube: kube, flights: flights,
		deployments:     listers.New[*appsv1.Deployment](dep.GetIndexer(), appsv1.Resource("deployments")),
		replicaSets:     listers.New[*appsv1.ReplicaSet](rs.GetIndexer(), appsv1.Resource("replicasets")),
		services:        listers.New[*corev1.Service](svc.GetIndexer(), corev1.Resource("services")),
		flightList:      listers.New[*v1alpha1.Flight](fl.GetIndexer(), v1alpha1.FlightResource.GroupResource()),
		flightIndex:     fl.GetIndexer(),
		autoscalers:     hpa.GetIndexer(),
		deploymentIndex: dep.GetIndexer(),
		configMaps:      cm.GetIndexer(), secrets: secrets, secretsWhy: secretsWhy,
		synced: synced,
	}
}

// readable says why fledge may not list what it caches in namespace ns
// ("" for all), or "" if it may. A missing RoleBinding is the usual
// reason; an informer started without it would retry forever in silence
// and never sync.
func (s *scopes) readable(ctx context.Context, ns string) string {
	one := metav1.ListOptions{Limit: 1}
	probes := []struct {
		resource string
		list     func() error
	}{
		{"deployments", func() error { _, err := s.kube.AppsV1().Deployments(ns).List(ctx, one); return err }},
		{"replicasets", func() error { _, err := s.kube.AppsV1().ReplicaSets(ns).List(ctx, one); return err }},
		{"services", func() error { _, err := s.kube.CoreV1().Services(ns).List(ctx, one); return err }},
		{"flights", func() error { _, err := s.fledge.FledgeV1alpha1().Flights(ns).List(ctx, one); return err }},
		{"horizontalpodautoscalers", func() error {
			_, err := s.kube.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, one)
			return err
		}},
		{"configmaps", func() error { _, err := s.kube.CoreV1().ConfigMaps(ns).List(ctx, one); return err }},
	}
	where := "in namespace " + ns
	if ns == metav1.NamespaceAll {
		where = "cluster-wide"
	}
	for _, p := range probes {
		err := p.list()
		switch {
		case err == nil:
		case apierrors.IsForbidden(err):
			if ns == metav1.NamespaceAll {
				return fmt.Sprintf("fledge may not list %s %s: bind the ClusterRole fledge with a ClusterRoleBinding (deploy/rbac-cluster.yaml), or run with --namespaces", p.resource, where)
			}
			return fmt.Sprintf("fledge may not list %s %s: bind the ClusterRole fledge there (kubectl -n %s apply -f deploy/rbac-namespace.yaml)", p.resource, where, ns)
		default:
			return fmt.Sprintf("listing %s %s failed: %v", p.resource, where, err)
		}
	}
	return ""
}

// add starts the caches of namespace ns if fledge may read there, waits
// until they have synced and makes them visible; it returns why not
// otherwise. Once visible, every opted-in Deployment and Flight of ns is
// looked at (their informer events came before the caches could be
// read).
func (s *scopes) add(ctx context.Context, ns string) (string, error) {
	if why := s.readable(ctx, ns); why != "" {
		return why, nil
	}
	sc := s.newScope(ns, s.secretsReadable(ctx, ns))
	sc.kube.Start(ctx.Done())
	sc.flights.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), sc.synced...) {
		sc.kube.Shutdown()
		sc.flights.Shutdown()
		return "", fmt.Errorf("the caches of %s did not sync", describeNamespace(ns))
	}
	s.mu.Lock()
	s.byNamespace[ns] = sc
	delete(s.waiting, ns)
	s.mu.Unlock()
	return "", nil
}

func describeNamespace(ns string) string {
	if ns == metav1.NamespaceAll {
		return "every namespace"
	}
	return "namespace " + ns
}

// wait records that fledge may not read namespace ns yet, and why.
func (s *scopes) wait(ns, why string) {
	s.mu.Lock()
	s.waiting[ns] = why
	s.mu.Unlock()
}

// Waiting returns the namespaces fledge was told to act in but may not
// read yet, with why (and what would end the wait).
func (s *scopes) Waiting() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.waiting))
	for ns, why := range s.waiting {
		out[ns] = why
	}
	return out
}

// all returns the synced scopes in namespace order.
func (s *scopes) all() []*scope {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*scope, 0, len(s.byNamespace))
	for _, sc := range s.byNamespace {
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b *scope) int {
		if a.namespace < b.namespace {
			return -1
		}
		if a.namespace > b.namespace {
			return 1
		}
		return 0
	})
	return out
}

// of returns the scope that caches namespace ns, or nil.
func (s *scopes) of(ns string) *scope {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sc, ok := s.byNamespace[metav1.NamespaceAll]; ok {
		return sc
	}
	return s.byNamespace[ns]
}

func (s *scopes) shutdown() {
	for _, sc := range s.all() {
		sc.kube.Shutdown()
		sc.flights.Shutdown()
	}
}

// cached reads one kind from the caches of every namespace fledge acts in.
// A namespace it does not act in reads as empty: Get answers NotFound.
type cached[T runtime.Object] struct {
	scopes   *scopes
	resource schema.GroupResource
	pick     func(*scope) listers.ResourceIndexer[T]
}

// In returns the reader of namespace ns.
func (l cached[T]) In(ns string) listers.ResourceIndexer[T] {
	if sc := l.scopes.of(ns); sc != nil {
		return listers.NewNamespaced(l.pick(sc), ns)
	}
	return listers.NewNamespaced(listers.New[T](emptyIndexer, l.resource), ns)
}

// List lists across every namespace fledge acts in.
func (l cached[T]) List(selector labels.Selector) ([]T, error) {
	var out []T
	for _, sc := range l.scopes.all() {
		list, err := l.pick(sc).List(selector)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return out, nil
}

// emptyIndexer is what a namespace fledge does not act in reads from.
var emptyIndexer = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})

// Start starts the informers of every namespace fledge may read and waits
// until their caches are synced; namespaces it may not read yet are tried
// again every NamespaceRetry in the background. Every replica starts them, so
// that followers serve reads; only the leader runs workers. The informers
// stop when ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	c.startOnce.Do(func() {
		var pending []string
		for _, ns := range c.namespaces {
			ok, err := c.watch(ctx, ns)
			if err != nil {
				c.startErr = err
				return
			}
			if !ok {
				pending = append(pending, ns)
			}
		}
		if len(pending) > 0 {
			go c.retryNamespaces(ctx, pending)
		}
	})
	return c.startErr
}

// watch starts the caches of namespace ns if fledge may read there, and
// then looks at everything in them; it says why not otherwise.
func (c *Controller) watch(ctx context.Context, ns string) (bool, error) {
	why, err := c.scopes.add(ctx, ns)
	if err != nil {
		return false, err
	}
	c.metrics.namespaceWatched(ns, why == "")
	if why != "" {
		c.scopes.wait(ns, why)
		c.log.Error("fledge does not act in this namespace yet; it tries again every "+c.namespaceRetry.String(), "namespace", describeNamespace(ns), "reason", why)
		return false, nil
	}
	c.log.Info("watching", "namespace", describeNamespace(ns))
	// The caches' first events came before they could be read.
	c.EnqueueAll()
	return true, nil
}

// retryNamespaces tries the namespaces fledge may not read yet every
// NamespaceRetry, until it may read each or ctx is done.
func (c *Controller) retryNamespaces(ctx context.Context, pending []string) {
	defer utilruntime.HandleCrash()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(c.namespaceRetry):
		}
		var still []string
		for _, ns := range pending {
			if ok, err := c.watch(ctx, ns); err != nil || !ok {
				still = append(still, ns)
			}
		}
		pending = still
	}
}

// Waiting returns the namespaces the controller was told to act in but
// may not read yet, each with why and what would end the wait.
func (c *Controller) Waiting() map[string]string { return c.scopes.Waiting() }

// lean drops from what the caches keep what fledge never reads of an
// object: its managedFields, and kubectl's last-applied-configuration (a
// copy of the whole object), often most of a Deployment's or Service's
// size. fledge's writes from a cached object are patches, or an update
// of a Flight whose managedFields, omitted, the API server keeps.
func lean(obj any) (any, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil // a tombstone, say: kept as it is
	}
	m.SetManagedFields(nil)
	leanConfig(obj)
	leanReplicaSet(obj)
	if a := m.GetAnnotations(); a != nil {
		delete(a, corev1.LastAppliedConfigAnnotation)
	}
	return obj, nil
}

// annotationTemplateHash holds, on the informer cache's ReplicaSets only,
// their pod template's TemplateHash: the template itself is dropped before
// it is cached (leanReplicaSet).
const annotationTemplateHash = "fledge.dev/template-hash"

// leanReplicaSet keeps of a ReplicaSet's pod template what fledge reads:
// its hash (TemplateHash, in an annotation) and its containers' names and
// images. A cluster keeps up to ten old ReplicaSets a Deployment (its
// revision history), each with its whole template, of which fledge reads
// only these. A ReplicaSet already lean (a resync hands
// the cached object over again) is left as it is: cached objects are
// shared, and never changed.
func leanReplicaSet(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok || rs.Spec.Template.Labels == nil && rs.Annotations[annotationTemplateHash] != "" {
		return
	}
	a := make(map[string]string, len(rs.Annotations)+1)
	maps.Copy(a, rs.Annotations)
	a[annotationTemplateHash] = TemplateHash(rs.Spec.Template)
	rs.Annotations = a
	images := func(cs []corev1.Container) []corev1.Container {
		if len(cs) == 0 {
			return nil
		}
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name, Image: c.Image}
		}
		return out
	}
	rs.Spec.Template = corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		Containers: images(rs.Spec.Template.Spec.Containers), InitContainers: images(rs.Spec.Template.Spec.InitContainers),
	}}
}

// replicaSetTemplateHash is TemplateHash of the ReplicaSet's pod template,
// as the cache keeps it (leanReplicaSet), or computed.
func replicaSetTemplateHash(rs *appsv1.ReplicaSet) string {
	if h := rs.Annotations[annotationTemplateHash]; h != "" && rs.Spec.Template.Labels == nil {
		return h
	}
	return TemplateHash(rs.Spec.Template)
}

// HasSynced reports whether every informer cache the controller reads
// has synced: until then it cannot decide, nor serve reads.
func (c *Controller) HasSynced() bool {
	all := c.scopes.all()
	for _, sc := range all {
		for _, synced := range sc.synced {
			if !synced() {
				return false
			}
		}
	}
	return len(all) > 0
}

// secretsReadable says why fledge may not list the Secrets of namespace
// ns ("" for all), or "" if it may. Unlike the rest, they are optional:
// without them, changes of the Secrets pods read are not canaried (the
// Flights that read one say so), and the rest works.
func (s *scopes) secretsReadable(ctx context.Context, ns string) string {
	_, err := s.kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{Limit: 1})
	switch {
	case err == nil:
		return ""
	case apierrors.IsForbidden(err):
		return "fledge may not list Secrets in " + describeNamespace(ns)
	default:
		return fmt.Sprintf("listing Secrets in %s failed: %v", describeNamespace(ns), err)
	}
}
