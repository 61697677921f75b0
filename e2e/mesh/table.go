package mesh

import (
	"cmp"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Kinds as Problems and AppliedVersion name them.
const (
	kindVirtualService  = "VirtualService"
	kindDestinationRule = "DestinationRule"
	kindService         = "Service"
	kindPod             = "Pod"
)

// snapshot is the configuration a table is built from, as listed from the
// informer caches. The objects are shared with the caches and are never
// modified.
type snapshot struct {
	virtualServices  []*networkingv1.VirtualService
	destinationRules []*networkingv1.DestinationRule
	services         []*corev1.Service
	pods             []*corev1.Pod
	// config is what the pods read of their ConfigMaps and Secrets; the
	// zero value when no history was recorded (every object is missing).
	config configSnapshot
}

// table is a compiled, immutable routing table. Routing reads it without
// locks; the only mutable state is the round-robin cursor of each target,
// which is atomic.
type table struct {
	vhosts    map[string]*virtualHost  // exact VirtualService hosts
	wildcards []*virtualHost           // wildcard hosts, most specific first
	services  map[string]*serviceEntry // by fully qualified host
	versions  map[objectRef]string     // resourceVersion of every input
	problems  []Problem
	// flags are the flags the ready pods evaluate. Their clients are
	// attached by the emulator before it publishes the table; a table
	// built alone answers every evaluation with the "error" variant.
	flags []*podFlag
	// comparators are the ready pods that run a working comparator, whose
	// series the emulator creates when it publishes the table.
	comparators []*podInfo
	// configPods are the ready pods that reference a ConfigMap or Secret,
	// whose views the emulator gives counters when it publishes the table.
	configPods []*podInfo
	// configChangeAt is when some ready pod's view of a live volume next
	// changes, which no informer event announces: the emulator rebuilds
	// the table then. Zero when none will.
	configChangeAt time.Time
}

// objectRef names an input object. kind is lower case so that
// AppliedVersion accepts "Pod" and "pod" alike.
type objectRef struct {
	kind, namespace, name string
}

// virtualHost is the routing of one host claimed by a VirtualService.
type virtualHost struct {
	host   string
	routes []*httpRoute
}

type serviceEntry struct {
	host, name, namespace string
	// endpoints are the ready pods the selector picks, sorted by name so
	// that round-robin is reproducible.
	endpoints []*podInfo
	direct    *target // where the host goes when no VirtualService claims it
}

// target is a destination a route may send to, an Envoy cluster: a host
// and an optional subset. Targets are shared by every route that names the
// same host and subset, so that round-robin spreads over all of them as
// one Envoy cluster would.
type target struct {
	host   string
	subset string
	svc    *serviceEntry // nil when no Service has this host
	// flags is "NC" when the target cannot exist (unknown host or subset).
	flags     string
	endpoints []endpoint
	next      atomic.Uint64
	// noPod are the destination labels of requests that reach no pod.
	noPod destLabels
}

type endpoint struct {
	pod    *podInfo
	labels destLabels
}

type targetKey struct{ host, subset string }

// newTable returns a table that routes nothing; the emulator holds one
// until its informers have synced.
func newTable() *table {
	return &table{
		vhosts:   map[string]*virtualHost{},
		services: map[string]*serviceEntry{},
		versions: map[objectRef]string{},
	}
}

// builder holds the intermediate state of buildTable.
type builder struct {
	t        *table
	pods     map[string][]*podInfo // ready pods by namespace
	rules    map[string][]*networkingv1.DestinationRule
	targets  map[targetKey]*target
	config   configSnapshot
	problems []Problem
}

// buildTable compiles the routing table from a snapshot of the cluster. It
// is a pure function of its input; the problems it returns are also stored
// in the table.
func buildTable(s snapshot) (*table, []Problem) {
	b := &builder{
		t:       newTable(),
		pods:    map[string][]*podInfo{},
		rules:   map[string][]*networkingv1.DestinationRule{},
		targets: map[targetKey]*target{},
		config:  s.config,
	}
	b.recordVersions(s)
	b.addPods(s.pods)
	b.addServices(s.services)
	b.addDestinationRules(s.destinationRules)
	b.addVirtualServices(s.virtualServices)
	for _, svc := range b.t.services {
		svc.direct = b.target(svc.host, "")
	}

	slices.SortFunc(b.problems, func(x, y Problem) int {
		return cmp.Or(
			cmp.Compare(x.Kind, y.Kind),
			cmp.Compare(x.Namespace, y.Namespace),
			cmp.Compare(x.Name, y.Name),
			cmp.Compare(x.Field, y.Field),
			cmp.Compare(x.Message, y.Message),
		)
	})
	// Pods that read one object report its problems alike.
	b.problems = slices.Compact(b.problems)
	b.t.problems = b.problems
	return b.t, b.problems
}

func (b *builder) problem(kind string, meta *metav1.ObjectMeta, field, format string, args ...any) {
	b.problems = append(b.problems, Problem{
		Kind: kind, Namespace: meta.Namespace, Name: meta.Name,
		Field: field, Message: fmt.Sprintf(format, args...),
	})
}

func (b *builder) recordVersions(s snapshot) {
	record := func(kind string, meta *metav1.ObjectMeta) {
		b.t.versions[objectRef{lowerKind(kind), meta.Namespace, meta.Name}] = meta.ResourceVersion
	}
	for _, o := range s.virtualServices {
		record(kindVirtualService, &o.ObjectMeta)
	}
	for _, o := range s.destinationRules {
		record(kindDestinationRule, &o.ObjectMeta)
	}
	for _, o := range s.services {
		record(kindService, &o.ObjectMeta)
	}
	for _, o := range s.pods {
		record(kindPod, &o.ObjectMeta)
	}
}

func (b *builder) addPods(pods []*corev1.Pod) {
	for _, pod := range pods {
		// A started pod's behaviour is its annotations with the keys of
		// the config it reads applied over them; a pod not ready has read
		// nothing that matters yet.
		ready := podReady(pod)
		cfg := podConfig{annotations: pod.Annotations}
		if ready {
			cfg = b.podConfig(pod, workloadName(pod))
		}
		behaviour, problems := parseBehaviour(cfg.annotations)
		for _, p := range problems {
			b.behaviourProblem(pod, &cfg, p)
		}
		comparator, argProblems := parseComparator(pod)
		for _, p := range argProblems {
			b.problem(kindPod, &pod.ObjectMeta, p.Field, "%s", p.Message)
		}
		if !ready {
			continue
		}
		info := newPodInfo(pod, behaviour)
		b.pods[pod.Namespace] = append(b.pods[pod.Namespace], info)
		if info.configs = cfg.uses; len(info.configs) > 0 {
			b.t.configPods = append(b.t.configPods, info)
		}
		if comparator != nil {
			// A comparator is not the app: it evaluates no flag.
			info.comparator, info.flag = comparator, nil
			if !comparator.broken {
				b.t.comparators = append(b.t.comparators, info)
			}
		}
		if info.flag != nil {
			b.t.flags = append(b.t.flags, info.flag)
		}
	}
	for _, pods := range b.pods {
		slices.SortFunc(pods, func(x, y *podInfo) int { return cmp.Compare(x.name, y.name) })
	}
}

// podReady is the condition for a pod to be an endpoint of its Services:
// what the EndpointSlice controller publishes as ready and Envoy therefore
// sends traffic to.
func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (b *builder) addServices(services []*corev1.Service) {
	for _, svc := range services {
		entry := &serviceEntry{
			host:      serviceHost(svc.Name, svc.Namespace),
			name:      svc.Name,
			namespace: svc.Namespace,
		}
		// A Service without a selector has no endpoints Istio would know
		// of (its manual Endpoints are not modelled).
		if len(svc.Spec.Selector) > 0 {
			selector := labels.SelectorFromSet(svc.Spec.Selector)
			for _, pod := range b.pods[svc.Namespace] {
				if selector.Matches(labels.Set(pod.labels)) {
					entry.endpoints = append(entry.endpoints, pod)
				}
			}
		}
		b.t.services[entry.host] = entry
	}
}

// addDestinationRules indexes rules by the host they apply to, oldest
// first.
func (b *builder) addDestinationRules(rules []*networkingv1.DestinationRule) {
	rules = slices.Clone(rules)
	slices.SortFunc(rules, func(x, y *networkingv1.DestinationRule) int { return olderFirst(&x.ObjectMeta, &y.ObjectMeta) })
	for _, dr := range rules {
		if dr.Spec.GetHost() == "" {
			b.problem(kindDestinationRule, &dr.ObjectMeta, "spec.host", "empty; the rule is ignored")
			continue
		}
		host := qualifyHost(dr.Spec.GetHost(), dr.Namespace)
		b.rules[host] = append(b.rules[host], dr)
	}
	// Report rules that lose to another one for the same host, so that a
	// test author is not left wondering why a subset is missing.
	for host, candidates := range b.rules {
		winner := b.ruleFor(host)
		for _, dr := range candidates {
			if dr != winner {
				b.problem(kindDestinationRule, &dr.ObjectMeta, "spec.host",
					"host %s is also configured by destinationrule %s/%s, which takes precedence; this rule is ignored",
					host, winner.Namespace, winner.Name)
			}
		}
	}
}

// ruleFor picks the DestinationRule for a host: one in the Service's
// namespace if there is one, the oldest otherwise. An exact host beats the
// most specific wildcard.
func (b *builder) ruleFor(host string) *networkingv1.DestinationRule {
	candidates := b.rules[host]
	if len(candidates) == 0 {
		var best string
		for pattern := range b.rules {
			if isWildcard(pattern) && wildcardMatches(pattern, host) && len(pattern) > len(best) {
				best = pattern
			}
		}
		candidates = b.rules[best]
	}
	if len(candidates) == 0 {
		return nil
	}
	if svc := b.t.services[host]; svc != nil {
		for _, dr := range candidates {
			if dr.Namespace == svc.namespace {
				return dr
			}
		}
	}
	return candidates[0]
}

// target returns the shared target for host and subset, building it on
// first use.
func (b *builder) target(host, subset string) *target {
	key := targetKey{host, subset}
	if t, ok := b.targets[key]; ok {
		return t
	}
	t := &target{host: host, subset: subset, svc: b.t.services[host]}
	b.targets[key] = t
	switch {
	case t.svc == nil:
		t.flags = flagNoCluster
	case subset == "":
		t.endpoints = endpointsOf(t.svc, t.svc.endpoints)
	default:
		selector, ok := b.subsetSelector(host, subset)
		if !ok {
			t.flags = flagNoCluster
			break
		}
		var pods []*podInfo
		for _, pod := range t.svc.endpoints {
			if selector.Matches(labels.Set(pod.labels)) {
				pods = append(pods, pod)
			}
		}
		t.endpoints = endpointsOf(t.svc, pods)
	}
	t.noPod = noPodLabels(host, t.svc)
	return t
}

func (b *builder) subsetSelector(host, subset string) (labels.Selector, bool) {
	dr := b.ruleFor(host)
	if dr == nil {
		return nil, false
	}
	for _, s := range dr.Spec.GetSubsets() {
		if s.GetName() == subset {
			return labels.SelectorFromSet(s.GetLabels()), true
		}
	}
	return nil, false
}

func endpointsOf(svc *serviceEntry, pods []*podInfo) []endpoint {
	eps := make([]endpoint, len(pods))
	for i, pod := range pods {
		eps[i] = endpoint{pod: pod, labels: endpointLabels(svc, pod)}
	}
	return eps
}

// olderFirst orders objects by age, then by namespace and name, which is
// how Istio breaks ties between rules that claim the same host.
func olderFirst(x, y *metav1.ObjectMeta) int {
	return cmp.Or(
		x.CreationTimestamp.Time.Compare(y.CreationTimestamp.Time),
		cmp.Compare(x.Namespace, y.Namespace),
		cmp.Compare(x.Name, y.Name),
	)
}
