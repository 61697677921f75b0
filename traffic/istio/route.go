package istio

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/fledgehq/fledge/traffic"
)

// clusterDomainSuffix is the Kubernetes Service domain Istio assumes.
const clusterDomainSuffix = ".svc.cluster.local"

// fqdn expands a host written in a VirtualService the way Istio does
// (ResolveShortnameToFQDN): a name without dots is a Service in the
// VirtualService's namespace; anything with a dot, wildcards included, is
// taken as written. So "web" and "web.shop.svc.cluster.local" are the same
// host in namespace shop, but "web.shop" is not: Istio does not expand it.
func fqdn(host, namespace string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "*" || strings.Contains(host, ".") {
		return host
	}
	return host + "." + namespace + clusterDomainSuffix
}

// hostKind says which share of the split a destination host is.
type hostKind uint8

const (
	otherHost hostKind = iota
	stableHost
	canaryHost
	baselineHost
	// comparatorHost is never a share of the split: only a mirror goes
	// there.
	comparatorHost
)

// services resolves destination hosts against a target's Services.
type services struct {
	// stable, canary, baseline and comparator are fully qualified;
	// baseline and comparator are "" when the target names none, so that
	// no host is taken for them.
	stable, canary, baseline, comparator string
	t                                    traffic.Target
}

func servicesOf(t traffic.Target) services {
	s := services{stable: fqdn(t.Stable, t.Namespace), canary: fqdn(t.Canary, t.Namespace), t: t}
	if t.Baseline != "" {
		s.baseline = fqdn(t.Baseline, t.Namespace)
	}
	if t.Comparator != "" {
		s.comparator = fqdn(t.Comparator, t.Namespace)
	}
	return s
}

func (s services) kind(host string) hostKind {
	switch h := fqdn(host, s.t.Namespace); {
	case h == s.stable:
		return stableHost
	case h == s.canary:
		return canaryHost
	case s.baseline != "" && h == s.baseline:
		return baselineHost
	case s.comparator != "" && h == s.comparator:
		return comparatorHost
	}
	return otherHost
}

// names lists the target's Services for errors: "the stable Service web
// nor the canary Service web-canary", and the baseline when there is one.
func (s services) names() string {
	if s.t.Baseline == "" {
		return fmt.Sprintf("the stable Service %s nor the canary Service %s", s.t.Stable, s.t.Canary)
	}
	return fmt.Sprintf("the stable Service %s, the canary Service %s nor the baseline Service %s", s.t.Stable, s.t.Canary, s.t.Baseline)
}

// problem is what is wrong with a route and where, relative to the
// route (".route[2].destination.host"). The caller adds which
// VirtualService and route, and whether a person must fix it.
type problem struct {
	field, message string
}

// routeRef names an http route in errors: spec.http[1] ("canary").
type routeRef struct {
	index int
	name  string
}

func (r routeRef) String() string { return fmt.Sprintf("spec.http[%d] (%q)", r.index, r.name) }

// readSplit returns the split that a route's destinations give the target,
// as the mesh applies it: weights of the stable, the canary and the
// baseline host are summed, and a lone destination takes all traffic
// whatever its weight, as in Istio. Any other host (the baseline's too,
// when the target names none), or weights that are not a valid split, is
// a problem: the router cannot say what share the canary gets.
func readSplit(dests []*networkingv1.HTTPRouteDestination, s services) (traffic.Weights, *problem) {
	if len(dests) == 0 {
		return traffic.Weights{}, noDestinations
	}
	var w traffic.Weights
	for i, d := range dests {
		weight := d.GetWeight()
		if len(dests) == 1 {
			weight = 100
		}
		switch s.kind(d.GetDestination().GetHost()) {
		case stableHost:
			w.Stable += weight
		case canaryHost:
			w.Canary += weight
		case baselineHost:
			w.Baseline += weight
		default:
			return traffic.Weights{}, otherHostProblem(i, d, s)
		}
	}
	if err := w.Validate(); err != nil {
		return traffic.Weights{}, &problem{".route", fmt.Sprintf("weights are not a split: %v", err)}
	}
	return w, nil
}

var noDestinations = &problem{".route", "has no destinations (a redirect, a direct response or a delegate?)"}

func otherHostProblem(i int, d *networkingv1.HTTPRouteDestination, s services) *problem {
	return &problem{
		fmt.Sprintf(".route[%d].destination.host", i),
		fmt.Sprintf("%q is neither %s", d.GetDestination().GetHost(), s.names()),
	}
}

// stableDestination checks that the router can rewrite a route's
// destinations without losing anything the owner wrote: exactly one
// destination for the stable host (it is kept, and copied for the canary
// and the baseline), at most one for the canary host and one for the
// baseline host (fledge's own, from an earlier call), and no other host.
// It returns the stable destination and whether a destination of
// fledge's (the canary's or the baseline's) is present.
func stableDestination(dests []*networkingv1.HTTPRouteDestination, s services) (*networkingv1.HTTPRouteDestination, bool, *problem) {
	if len(dests) == 0 {
		return nil, false, noDestinations
	}
	var stable *networkingv1.HTTPRouteDestination
	canaries, baselines := 0, 0
	for i, d := range dests {
		switch s.kind(d.GetDestination().GetHost()) {
		case stableHost:
			if stable != nil {
				return nil, false, &problem{fmt.Sprintf(".route[%d].destination.host", i),
					fmt.Sprintf("a second destination for the stable Service %s; fledge can only split a route with one", s.t.Stable)}
			}
			stable = d
		case canaryHost:
			if canaries++; canaries > 1 {
				return nil, false, &problem{fmt.Sprintf(".route[%d].destination.host", i),
					fmt.Sprintf("a second destination for the canary Service %s", s.t.Canary)}
			}
		case baselineHost:
			if baselines++; baselines > 1 {
				return nil, false, &problem{fmt.Sprintf(".route[%d].destination.host", i),
					fmt.Sprintf("a second destination for the baseline Service %s", s.t.Baseline)}
			}
		default:
			return nil, false, otherHostProblem(i, d, s)
		}
	}
	if stable == nil {
		return nil, false, &problem{".route", fmt.Sprintf("no destination has the stable Service %s as host", s.t.Stable)}
	}
	return stable, canaries+baselines > 0, nil
}

// splitDestinations is the destination list that gives w: the stable
// destination as the owner wrote it, with a weight; its canary copy (see
// copyDestination), which sets the sticky cookie if w has one; and, when
// w has a baseline share, its baseline copy, last. The baseline's
// responses never set the sticky cookie: it pins users to the canary.
// With no baseline share there is no baseline destination: one left at
// weight zero would be drift in a team's VirtualService, and a generated
// one would differ from what fledge generates for the same split.
//
// A zero weight is left out of the JSON, as proto3 does; Istio reads it as
// zero and sends that destination nothing.
func splitDestinations(stable *networkingv1.HTTPRouteDestination, t traffic.Target, w traffic.Weights) []*networkingv1.HTTPRouteDestination {
	s := proto.Clone(stable).(*networkingv1.HTTPRouteDestination)
	s.Weight = w.Stable
	c := withSetCookie(copyDestination(stable, t.Canary), w.Sticky)
	c.Weight = w.Canary
	out := []*networkingv1.HTTPRouteDestination{s, c}
	if w.Baseline > 0 {
		b := copyDestination(stable, t.Baseline)
		b.Weight = w.Baseline
		out = append(out, b)
	}
	return out
}

// copyDestination is a copy of the stable destination for another host of
// fledge's (the canary's or the baseline's), without a weight. The copy
// keeps the port (fledge's Services mirror the stable one's ports) and the
// header rules, but not the subset: subsets come from the stable host's
// DestinationRule and do not exist for the other host, where Envoy would
// answer 503 NC. fledge's Services already select only their own pods.
func copyDestination(stable *networkingv1.HTTPRouteDestination, host string) *networkingv1.HTTPRouteDestination {
	c := proto.Clone(stable).(*networkingv1.HTTPRouteDestination)
	if c.Destination == nil {
		c.Destination = &networkingv1.Destination{}
	}
	c.Destination.Host = host
	c.Destination.Subset = ""
	c.Weight = 0
	return c
}

// plainDestinations is the destination list before fledge: the stable
// destination alone, with no weight (a lone destination takes everything).
func plainDestinations(stable *networkingv1.HTTPRouteDestination) []*networkingv1.HTTPRouteDestination {
	s := proto.Clone(stable).(*networkingv1.HTTPRouteDestination)
	s.Weight = 0
	return []*networkingv1.HTTPRouteDestination{s}
}

func equalDestinations(a, b []*networkingv1.HTTPRouteDestination) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
