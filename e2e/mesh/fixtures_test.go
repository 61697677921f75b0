package mesh

import (
	"fmt"
	"maps"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// epoch is the creation time of fixtures; an object's age is an offset
// from it, so that "older" is explicit in a test.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func meta(ns, name string, createdAfter time.Duration) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace:         ns,
		Name:              name,
		CreationTimestamp: metav1.NewTime(epoch.Add(createdAfter)),
		ResourceVersion:   "1",
	}
}

func service(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: meta(ns, name, 0), Spec: corev1.ServiceSpec{Selector: selector}}
}

// deploymentPod is replica i of a Deployment's ReplicaSet with the given
// pod-template-hash, Running and Ready.
func deploymentPod(ns, deployment, hash string, i int, podLabels map[string]string, opts ...func(*corev1.Pod)) *corev1.Pod {
	l := maps.Clone(podLabels)
	if l == nil {
		l = map[string]string{}
	}
	l[labelTemplateHash] = hash
	p := &corev1.Pod{
		ObjectMeta: meta(ns, fmt.Sprintf("%s-%s-%05d", deployment, hash, i), 0),
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	p.Labels = l
	p.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deployment + "-" + hash, Controller: ptr.To(true),
	}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReady(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
}

func annotated(a map[string]string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations = a }
}

func virtualService(ns, name string, createdAfter time.Duration, hosts []string, routes ...*networking.HTTPRoute) *networkingv1.VirtualService {
	v := &networkingv1.VirtualService{ObjectMeta: meta(ns, name, createdAfter)}
	v.Spec.Hosts = hosts
	v.Spec.Http = routes
	return v
}

func withGateways(v *networkingv1.VirtualService, gateways ...string) *networkingv1.VirtualService {
	v.Spec.Gateways = gateways
	return v
}

func destinationRule(ns, name string, createdAfter time.Duration, host string, subsets ...*networking.Subset) *networkingv1.DestinationRule {
	d := &networkingv1.DestinationRule{ObjectMeta: meta(ns, name, createdAfter)}
	d.Spec.Host = host
	d.Spec.Subsets = subsets
	return d
}

func subset(name string, l map[string]string) *networking.Subset {
	return &networking.Subset{Name: name, Labels: l}
}

func httpRule(match []*networking.HTTPMatchRequest, dests ...*networking.HTTPRouteDestination) *networking.HTTPRoute {
	return &networking.HTTPRoute{Match: match, Route: dests}
}

func to(host, subsetName string, weight int32) *networking.HTTPRouteDestination {
	return &networking.HTTPRouteDestination{
		Destination: &networking.Destination{Host: host, Subset: subsetName},
		Weight:      weight,
	}
}

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

func prefix(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

func regex(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
}

func headerIs(name string, m *networking.StringMatch) []*networking.HTTPMatchRequest {
	return []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{name: m}}}
}

// demo is the usual world of the tests: Service app in namespace demo with
// two revisions, app-v1 (two pods) and app-v2 (one pod), and a
// DestinationRule with a subset for each.
type demo struct {
	svc    *corev1.Service
	v1, v2 []*corev1.Pod
	rule   *networkingv1.DestinationRule
}

func newDemo(v2Opts ...func(*corev1.Pod)) demo {
	return demo{
		svc: service("demo", "app", map[string]string{"app": "app"}),
		v1: []*corev1.Pod{
			deploymentPod("demo", "app-v1", "aaa111", 0, map[string]string{"app": "app", "version": "v1"}),
			deploymentPod("demo", "app-v1", "aaa111", 1, map[string]string{"app": "app", "version": "v1"}),
		},
		v2: []*corev1.Pod{
			deploymentPod("demo", "app-v2", "bbb222", 0, map[string]string{"app": "app", "version": "v2"}, v2Opts...),
		},
		rule: destinationRule("demo", "app", 0, "app",
			subset("v1", map[string]string{"version": "v1"}),
			subset("v2", map[string]string{"version": "v2"})),
	}
}

// snapshot returns the demo objects plus extra VirtualServices.
func (d demo) snapshot(vss ...*networkingv1.VirtualService) snapshot {
	return snapshot{
		virtualServices:  vss,
		destinationRules: []*networkingv1.DestinationRule{d.rule},
		services:         []*corev1.Service{d.svc},
		pods:             append(append([]*corev1.Pod{}, d.v1...), d.v2...),
	}
}

var (
	v1Rev = Revision{Namespace: "demo", Workload: "app-v1", TemplateHash: "aaa111"}
	v2Rev = Revision{Namespace: "demo", Workload: "app-v2", TemplateHash: "bbb222"}
)

const appHost = "app.demo.svc.cluster.local"

// servedBy is the response of a healthy HTTP request served by pod.
func servedBy(pod string, rev Revision) Response {
	return Response{
		Code: 200, Flags: "-", Namespace: rev.Namespace, Workload: rev.Workload,
		Pod: pod, TemplateHash: rev.TemplateHash, Service: appHost,
	}
}

// request is a plain HTTP request from the demo namespace.
func request(host string, headers map[string]string) Request {
	r := Request{Client: "tester", SourceNamespace: "demo", Host: host, User: "user-0", Headers: headers}
	normalizeRequest(&r)
	return r
}

// ignoreLatencyAndBody compares responses by who answered and how, leaving
// out what is sampled or made up per request (tested on their own).
var ignoreLatencyAndBody = cmpopts.IgnoreFields(Response{}, "LatencyMs", "BodyHash", "BodyLen")
