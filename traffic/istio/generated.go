package istio

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/traffic"
)

const (
	// ManagedByLabel marks the VirtualServices the router generated, with
	// the value ManagedBy. Only those are ever repaired or deleted.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "fledge"
	// RouteName names the single http route of a generated VirtualService.
	RouteName = "fledge"
	// meshGateway is Istio's reserved gateway name for sidecar traffic.
	meshGateway = "mesh"
)

// applyGenerated creates or repairs the generated VirtualService so that it
// routes t.Host with the split set, or, when set is nil, with the split it
// has (100/0 when it is new or its split was edited into an invalid one).
func (r *Router) applyGenerated(ctx context.Context, t traffic.Target, set *traffic.Weights) error {
	if err := r.checkHostUnclaimed(ctx, t); err != nil {
		return err
	}
	vss := r.client.NetworkingV1().VirtualServices(t.Namespace)
	for attempt := range maxAttempts {
		cur, err := r.read(ctx, t.Namespace, t.Name, attempt > 0)
		if apierrors.IsNotFound(err) {
			w := traffic.Weights{Stable: 100}
			if set != nil {
				w = *set
			}
			if err := traffic.Fenced(ctx); err != nil {
				return err
			}
			made, err := vss.Create(ctx, generated(t, w), metav1.CreateOptions{FieldManager: traffic.FieldManager})
			if apierrors.IsAlreadyExists(err) {
				continue // created meanwhile: repair that one instead
			}
			if err == nil {
				r.noteWrite(made, t.Namespace, t.Name)
			}
			return errorIn(t.Namespace, t.Name, "create", err)
		}
		if err != nil {
			return errorIn(t.Namespace, t.Name, "get", err)
		}
		if !managed(cur) {
			return unmanagedConflict(cur)
		}
		w := keptRouting(&cur.Spec, t)
		if set != nil {
			w = *set
		}
		next, changed := repaired(cur, t, w)
		if !changed {
			return nil
		}
		if err := traffic.Fenced(ctx); err != nil {
			return err
		}
		updated, err := vss.Update(ctx, next, metav1.UpdateOptions{FieldManager: traffic.FieldManager})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			continue // changed or deleted since the read: look again
		}
		if err == nil {
			r.noteWrite(updated, t.Namespace, t.Name)
		}
		return errorIn(t.Namespace, t.Name, "update", err)
	}
	return fmt.Errorf("virtualservice %s/%s: still changing after %d attempts; will retry", t.Namespace, t.Name, maxAttempts)
}

// generatedWeights reads the split of the generated VirtualService. No
// VirtualService means plain routing: everything goes to the stable
// Service.
func (r *Router) generatedWeights(ctx context.Context, t traffic.Target) (traffic.Weights, error) {
	cur, err := r.read(ctx, t.Namespace, t.Name, false)
	if apierrors.IsNotFound(err) {
		return traffic.Weights{Stable: 100}, nil
	}
	if err != nil {
		return traffic.Weights{}, errorIn(t.Namespace, t.Name, "get", err)
	}
	if !managed(cur) {
		return traffic.Weights{}, unmanagedConflict(cur)
	}
	// Competing VirtualServices are not looked for here: Ensure and
	// SetWeights refuse to route while one exists.
	w, splitErr, matchErr := readGenerated(&cur.Spec, t)
	if err := cmp.Or(splitErr, matchErr); err != nil {
		return traffic.Weights{}, fmt.Errorf("virtualservice %s/%s: %w; Ensure repairs it", cur.Namespace, cur.Name, err)
	}
	// The split and the match routes' headers could hide an edit that
	// changes what they apply to (a match, another host), so the rest must
	// be as generated too.
	if !proto.Equal(&cur.Spec, generatedSpec(t, w)) {
		return traffic.Weights{}, fmt.Errorf("virtualservice %s/%s: spec: edited since fledge generated it; Ensure repairs it", cur.Namespace, cur.Name)
	}
	return w, nil
}

// releaseGenerated deletes the generated VirtualService, and nothing that
// fledge did not generate.
func (r *Router) releaseGenerated(ctx context.Context, t traffic.Target) error {
	vss := r.client.NetworkingV1().VirtualServices(t.Namespace)
	for attempt := range maxAttempts {
		cur, err := r.read(ctx, t.Namespace, t.Name, attempt > 0)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return errorIn(t.Namespace, t.Name, "get", err)
		}
		if !managed(cur) {
			// Not fledge's: Ensure refused it, so fledge never routed
			// through it and has nothing to restore.
			return nil
		}
		if err := traffic.Fenced(ctx); err != nil {
			return err
		}
		// The preconditions make sure that what is deleted is what was
		// just judged to be fledge's, not an object re-created meanwhile.
		err = vss.Delete(ctx, t.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{
			UID: &cur.UID, ResourceVersion: &cur.ResourceVersion,
		}})
		if err == nil || apierrors.IsNotFound(err) {
			r.noteWrite(nil, t.Namespace, t.Name)
			return nil
		}
		if apierrors.IsConflict(err) {
			continue
		}
		return errorIn(t.Namespace, t.Name, "delete", err)
	}
	return fmt.Errorf("virtualservice %s/%s: still changing after %d attempts; will retry", t.Namespace, t.Name, maxAttempts)
}

// checkHostUnclaimed fails with ErrConflict when another VirtualService in
// the namespace routes the target's host for sidecars: Istio would merge
// or pick between the two, and fledge's weights might not be the ones
// applied. Gateway-only VirtualServices and wildcards do not compete for
// the exact host of sidecar traffic.
func (r *Router) checkHostUnclaimed(ctx context.Context, t traffic.Target) error {
	list, err := r.virtualServices(ctx, t.Namespace)
	if err != nil {
		return err
	}
	host := fqdn(t.Host, t.Namespace)
	for _, vs := range list {
		if vs.Name == t.Name {
			continue
		}
		if g := vs.Spec.GetGateways(); len(g) > 0 && !slices.Contains(g, meshGateway) {
			continue
		}
		for i, h := range vs.Spec.GetHosts() {
			if fqdn(h, vs.Namespace) == host {
				return fmt.Errorf("virtualservice %s/%s: spec.hosts[%d]: already routes %s; name this VirtualService (and a route) in the target to have fledge split its route instead: %w",
					vs.Namespace, vs.Name, i, host, traffic.ErrConflict)
			}
		}
	}
	return nil
}

// virtualServices lists the VirtualServices of namespace ns: from the
// cache if the router has one, else from the API server.
func (r *Router) virtualServices(ctx context.Context, ns string) ([]*istionetv1.VirtualService, error) {
	if r.others != nil {
		return r.others.list(ctx, ns)
	}
	list, err := r.client.NetworkingV1().VirtualServices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("virtualservices in %s: list: %w", ns, err)
	}
	return list.Items, nil
}

// generated is the VirtualService the router owns for t.
func generated(t traffic.Target, w traffic.Weights) *istionetv1.VirtualService {
	vs := &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{
			Name:      t.Name,
			Namespace: t.Namespace,
			Labels:    map[string]string{ManagedByLabel: ManagedBy},
		},
	}
	if t.Owner != nil {
		vs.OwnerReferences = []metav1.OwnerReference{*t.Owner}
	}
	proto.Merge(&vs.Spec, generatedSpec(t, w))
	return vs
}

// generatedSpec is the spec the router owns for t: the match routes of w
// ("fledge-cohort-<name>", then "fledge-sticky"), if any, and the split
// route, RouteName.
func generatedSpec(t traffic.Target, w traffic.Weights) *networkingv1.VirtualService {
	split, stable := generatedSplitRoute(t, w)
	// A generated split route has no match, so no header can collide.
	matches, _ := matchRoutes(withoutMirror(split), "", copyDestination(stable, t.Canary), w)
	return &networkingv1.VirtualService{
		Hosts: []string{t.Host},
		Http:  append(matches, split),
	}
}

// generatedSplitRoute is the split route of the generated VirtualService,
// and the stable destination it copies for the canary and the baseline.
func generatedSplitRoute(t traffic.Target, w traffic.Weights) (*networkingv1.HTTPRoute, *networkingv1.HTTPRouteDestination) {
	stable := &networkingv1.HTTPRouteDestination{Destination: &networkingv1.Destination{Host: t.Stable}}
	route := &networkingv1.HTTPRoute{Name: RouteName, Route: splitDestinations(stable, t, w)}
	if w.Mirror > 0 {
		to := t.Canary
		if w.MirrorCompared {
			to = t.Comparator
		}
		route.Mirror = &networkingv1.Destination{Host: to}
		route.MirrorPercentage = &networkingv1.Percent{Value: float64(w.Mirror)}
	}
	return route, stable
}

// withoutMirror is a copy of a generated split route without its mirror:
// what its match routes copy (a cohort's requests go to the canary, and
// are not copied to it as well).
func withoutMirror(r *networkingv1.HTTPRoute) *networkingv1.HTTPRoute {
	out := proto.Clone(r).(*networkingv1.HTTPRoute)
	out.Mirror, out.MirrorPercentage = nil, nil
	return out
}

// readMirror reads the mirror of a split route: fledge's own mirror to the
// canary or to the comparator, as generatedSplitRoute writes it, or none;
// compared says it goes to the comparator. Any other mirror is not
// fledge's to read.
func readMirror(route *networkingv1.HTTPRoute, s services) (pct32 int32, compared bool, _ *problem) {
	if len(route.GetMirrors()) > 0 {
		return 0, false, &problem{".mirrors", "is set: fledge mirrors with mirror and mirrorPercentage only"}
	}
	m := route.GetMirror()
	if m == nil {
		return 0, false, nil
	}
	switch k := s.kind(m.GetHost()); {
	case m.GetSubset() != "" || k != canaryHost && k != comparatorHost:
		what := "the canary Service " + s.t.Canary
		if s.t.Comparator != "" {
			what += " nor the comparator Service " + s.t.Comparator
		}
		return 0, false, &problem{".mirror.host", fmt.Sprintf("%q is not %s", m.GetHost(), what)}
	case k == comparatorHost:
		compared = true
	}
	pct := 100.0
	if p := route.GetMirrorPercentage(); p != nil {
		pct = p.GetValue()
	}
	if pct != math.Trunc(pct) || pct < 0 || pct > 100 {
		return 0, false, &problem{".mirrorPercentage.value", fmt.Sprintf("%g is not a whole percentage in 0..100", pct)}
	}
	return int32(pct), compared, nil
}

// readGenerated reads the routing a generated VirtualService holds: the
// split of the route named RouteName (splitErr if there is none, or no
// valid split), and the cohort and sticky cookie of the match routes before
// it, by their names (matchErr if one cannot be read, and then w has
// neither a cohort nor a sticky cookie). Other routes are
// ignored, and so is everything but names, headers and splits: callers
// compare the whole spec, or repair it.
func readGenerated(spec *networkingv1.VirtualService, t traffic.Target) (w traffic.Weights, splitErr, matchErr error) {
	http := spec.GetHttp()
	split := slices.IndexFunc(http, func(r *networkingv1.HTTPRoute) bool { return r.GetName() == RouteName })
	if split < 0 {
		return traffic.Weights{}, fmt.Errorf("spec.http: no route named %q", RouteName), nil
	}
	w, p := readSplit(http[split].GetRoute(), servicesOf(t))
	if p == nil {
		w.Mirror, w.MirrorCompared, p = readMirror(http[split], servicesOf(t))
		if p == nil && w.Validate() != nil {
			// The split alone was valid: the mirror is what does not fit
			// it (the canary, or a baseline, serves a share).
			p = &problem{".mirror", fmt.Sprintf("mirrors %d%% while the canary serves %d%% and the baseline %d%%", w.Mirror, w.Canary, w.Baseline)}
		}
	}
	if p != nil {
		w = traffic.Weights{}
		splitErr = fmt.Errorf("%s%s: %s", routeRef{split, RouteName}, p.field, p.message)
	}
	var refs []routeRef
	var matches []*networkingv1.HTTPRoute
	for i, route := range http[:split] {
		if isMatchRoute(route.GetName(), "") {
			refs = append(refs, routeRef{i, route.GetName()})
			matches = append(matches, route)
		}
	}
	pristine, _ := generatedSplitRoute(t, w)
	cohort, sticky, i, p := readMatchRoutes(matches, withoutMirror(pristine), "")
	if p != nil {
		return w, splitErr, fmt.Errorf("%s%s: %s", refs[i], p.field, p.message)
	}
	w.Cohort, w.Sticky = cohort, sticky
	return w, splitErr, nil
}

// keptRouting is the routing that Ensure keeps while it repairs: what
// readGenerated could read, with the safe side for what it could not: all
// traffic to stable for a split edited into an invalid one, and no match
// routes if one of them was edited into something fledge cannot read.
func keptRouting(spec *networkingv1.VirtualService, t traffic.Target) traffic.Weights {
	w, splitErr, _ := readGenerated(spec, t)
	if splitErr != nil {
		w.Stable, w.Canary = 100, 0
	}
	return w
}

// repaired returns a copy of cur that is as generated for t with split w,
// and whether that differs from cur. Labels and owners that others added
// are kept: they do not change routing.
func repaired(cur *istionetv1.VirtualService, t traffic.Target, w traffic.Weights) (*istionetv1.VirtualService, bool) {
	next := cur.DeepCopy()
	changed := false
	if want := generatedSpec(t, w); !proto.Equal(&next.Spec, want) {
		proto.Reset(&next.Spec)
		proto.Merge(&next.Spec, want)
		changed = true
	}
	if t.Owner != nil {
		var ownerChanged bool
		next.OwnerReferences, ownerChanged = withOwner(next.OwnerReferences, *t.Owner)
		changed = changed || ownerChanged
	}
	return next, changed
}

// withOwner makes owner the only reference of its kind in refs, keeping
// the others. A Flight deleted and re-created under the same name has a
// new UID: the stale reference goes, or the API server would reject two
// controller references.
func withOwner(refs []metav1.OwnerReference, owner metav1.OwnerReference) ([]metav1.OwnerReference, bool) {
	out := slices.DeleteFunc(slices.Clone(refs), func(o metav1.OwnerReference) bool {
		return o.APIVersion == owner.APIVersion && o.Kind == owner.Kind && o.UID != owner.UID
	})
	changed := len(out) != len(refs)
	if !slices.ContainsFunc(out, func(o metav1.OwnerReference) bool { return o.UID == owner.UID }) {
		out = append(out, owner)
		changed = true
	}
	return out, changed
}

func managed(vs *istionetv1.VirtualService) bool {
	return vs.Labels[ManagedByLabel] == ManagedBy
}

func unmanagedConflict(vs *istionetv1.VirtualService) error {
	return fmt.Errorf("virtualservice %s/%s: metadata.labels: exists without %s=%s, so it is not fledge's to replace: %w",
		vs.Namespace, vs.Name, ManagedByLabel, ManagedBy, traffic.ErrConflict)
}

// errorIn names the object and the operation of a failed API call; nil
// stays nil.
func errorIn(namespace, name, op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("virtualservice %s/%s: %s: %w", namespace, name, op, err)
}
