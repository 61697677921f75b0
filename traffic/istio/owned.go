package istio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/traffic"
)

// errMissing marks a user-owned VirtualService or route that is not there,
// which Release takes as nothing left to restore.
var errMissing = errors.New("missing")

// located is the target's route in its user-owned VirtualService, as read,
// with fledge's match routes right before it.
type located struct {
	vs    *istionetv1.VirtualService
	ref   routeRef
	route *networkingv1.HTTPRoute
	// matches are the routes from spec.http[matchesFrom] up to route,
	// which are fledge's: see isMatchRoute.
	matchesFrom int
	matches     []*networkingv1.HTTPRoute
}

// prefix is what the names of the route's match routes start with.
func (l located) prefix() string { return matchPrefix(l.route.GetName()) }

// matchRef names the i-th match route in errors.
func (l located) matchRef(i int) routeRef {
	return routeRef{l.matchesFrom + i, l.matches[i].GetName()}
}

// conflict is an error about a field of the target's route that a person
// must change before fledge can go on.
func (l located) conflict(p *problem) error {
	return fmt.Errorf("virtualservice %s/%s: %s%s: %s: %w", l.vs.Namespace, l.vs.Name, l.ref, p.field, p.message, traffic.ErrConflict)
}

// change is what fledge wants of the target's route: its destinations (nil
// to leave them as they are) and the match routes before it, all of them,
// in order (nil for none).
type change struct {
	route   []*networkingv1.HTTPRouteDestination
	matches []*networkingv1.HTTPRoute
}

// checkOwned is Ensure for a user-owned VirtualService: it writes nothing,
// since until the first SetWeights the route is already what fledge wants.
func (r *Router) checkOwned(ctx context.Context, t traffic.Target) error {
	l, err := r.locate(ctx, t, false)
	if err != nil {
		return err
	}
	if _, _, p := stableDestination(l.route.GetRoute(), servicesOf(t)); p != nil {
		return l.conflict(p)
	}
	return nil
}

func (r *Router) setOwned(ctx context.Context, t traffic.Target, w traffic.Weights) error {
	if w.Mirror > 0 {
		// fledge changes only the route's destinations in a team's
		// VirtualService (and its match routes before it), never the
		// route's own fields, where Istio keeps a mirror.
		return fmt.Errorf("target %s: cannot mirror through the team's VirtualService %s: fledge changes only its route's destinations there, and Istio keeps a route's mirror in the route itself; "+
			"let fledge generate the app's VirtualService to mirror it: %w", t, t.VirtualService, traffic.ErrConflict)
	}
	return r.patchRoute(ctx, t, func(l located) (change, error) {
		s := servicesOf(t)
		stable, split, p := stableDestination(l.route.GetRoute(), s)
		if p == nil && !w.Sticky.IsZero() {
			p = setCookieProblem(l.route.GetRoute(), s)
		}
		if p != nil {
			return change{}, l.conflict(p)
		}
		matches, p := matchRoutes(l.route, l.prefix(), copyDestination(stable, t.Canary), w)
		if p != nil {
			return change{}, l.conflict(p)
		}
		c := change{matches: matches}
		switch {
		case w.Canary > 0 || w.Baseline > 0:
			c.route = splitDestinations(stable, t, w)
		case split:
			// All on stable is the route as its owner wrote it: a leftover
			// zero-weight canary (or baseline) destination would be drift
			// in their GitOps repository after every rollout.
			c.route = plainDestinations(stable)
		}
		return c, nil
	})
}

func (r *Router) ownedWeights(ctx context.Context, t traffic.Target) (traffic.Weights, error) {
	l, err := r.locate(ctx, t, false)
	if err != nil {
		return traffic.Weights{}, err
	}
	s := servicesOf(t)
	w, p := readSplit(l.route.GetRoute(), s)
	if p != nil {
		return traffic.Weights{}, l.conflict(p)
	}
	if len(l.matches) == 0 {
		return w, nil
	}
	stable, _, p := stableDestination(l.route.GetRoute(), s)
	if p != nil {
		return traffic.Weights{}, l.conflict(p)
	}
	cohort, sticky, i, p := readMatchRoutes(l.matches, l.route, l.prefix())
	if p != nil {
		return traffic.Weights{}, fmt.Errorf("virtualservice %s/%s: %s%s: %s; SetWeights rewrites it, Release removes it",
			l.vs.Namespace, l.vs.Name, l.matchRef(i), p.field, p.message)
	}
	w.Cohort, w.Sticky = cohort, sticky
	want, p := matchRoutes(l.route, l.prefix(), copyDestination(stable, t.Canary), w)
	if p != nil {
		// The route was edited to match the header itself since.
		return traffic.Weights{}, l.conflict(p)
	}
	if i, field := sameMatchRoutes(l.matches, want); i >= 0 {
		return traffic.Weights{}, fmt.Errorf("virtualservice %s/%s: %s%s: differs from the copy of %s that fledge writes (edited by hand, or %s was edited since); SetWeights rewrites it, Release removes it",
			l.vs.Namespace, l.vs.Name, l.matchRef(i), field, l.ref, l.ref)
	}
	if !w.Sticky.IsZero() {
		// New users reach the canary through the split: they get the
		// cookie only if its canary destination sets it.
		for i, d := range l.route.GetRoute() {
			if s.kind(d.GetDestination().GetHost()) == canaryHost && d.GetHeaders().GetResponse().GetAdd()[setCookieHeader] != w.Sticky.SetCookie() {
				return traffic.Weights{}, fmt.Errorf("virtualservice %s/%s: %s.route[%d].headers.response.add.%s: does not set sticky cookie %s=%s; SetWeights rewrites it",
					l.vs.Namespace, l.vs.Name, l.ref, i, setCookieHeader, w.Sticky.Cookie, w.Sticky.Value)
			}
		}
	}
	return w, nil
}

// releaseOwned removes the match routes and puts the stable destination
// back alone. A route without a canary or baseline destination is left
// exactly as it is, so that releasing a target fledge never split does
// not even reformat the owner's weight.
func (r *Router) releaseOwned(ctx context.Context, t traffic.Target) error {
	err := r.patchRoute(ctx, t, func(l located) (change, error) {
		stable, split, p := stableDestination(l.route.GetRoute(), servicesOf(t))
		if p != nil {
			return change{}, l.conflict(p)
		}
		var c change
		if split {
			c.route = plainDestinations(stable)
		}
		return c, nil
	})
	if errors.Is(err, errMissing) {
		return nil
	}
	return err
}

// locate reads the user-owned VirtualService and finds the target's route:
// the http route named t.Route, or the only one when t.Route is empty.
func (r *Router) locate(ctx context.Context, t traffic.Target, fresh bool) (located, error) {
	vs, err := r.read(ctx, t.Namespace, t.VirtualService, fresh)
	if apierrors.IsNotFound(err) {
		return located{}, fmt.Errorf("virtualservice %s/%s: named by the target but not found: %w: %w", t.Namespace, t.VirtualService, errMissing, traffic.ErrConflict)
	}
	if err != nil {
		return located{}, errorIn(t.Namespace, t.VirtualService, "get", err)
	}
	http := vs.Spec.GetHttp()
	found := -1
	if t.Route == "" {
		// The only route, but for fledge's match routes before it.
		last := len(http) - 1
		if last < 0 || slices.ContainsFunc(http[:last], func(r *networkingv1.HTTPRoute) bool {
			return !isMatchRoute(r.GetName(), matchPrefix(http[last].GetName()))
		}) {
			return located{}, fmt.Errorf("virtualservice %s/%s: spec.http: %d routes; the target must name the one fledge splits: %w", vs.Namespace, vs.Name, len(http), traffic.ErrConflict)
		}
		found = last
	}
	for i, route := range http {
		if t.Route == "" || route.GetName() != t.Route {
			continue
		}
		if found >= 0 {
			return located{}, fmt.Errorf("virtualservice %s/%s: spec.http[%d].name: %q also names spec.http[%d]; fledge cannot tell which to split: %w", vs.Namespace, vs.Name, i, t.Route, found, traffic.ErrConflict)
		}
		found = i
	}
	if found < 0 {
		return located{}, fmt.Errorf("virtualservice %s/%s: spec.http: no route named %q: %w: %w", vs.Namespace, vs.Name, t.Route, errMissing, traffic.ErrConflict)
	}
	l := located{vs: vs, ref: routeRef{found, http[found].GetName()}, route: http[found], matchesFrom: found}
	for l.matchesFrom > 0 && isMatchRoute(http[l.matchesFrom-1].GetName(), l.prefix()) {
		l.matchesFrom--
	}
	l.matches = http[l.matchesFrom:found]
	// A match route anywhere else would keep sending requests to the
	// canary, and fledge would neither read it back nor remove it.
	for i, route := range http {
		if (i < l.matchesFrom || i > found) && isMatchRoute(route.GetName(), l.prefix()) {
			return located{}, fmt.Errorf("virtualservice %s/%s: spec.http[%d].name: %q names a fledge match route of %s, but it is not right before it; move it back or delete it: %w",
				vs.Namespace, vs.Name, i, route.GetName(), l.ref, traffic.ErrConflict)
		}
	}
	return l, nil
}

// patchRoute reads the target's route, lets edit compute the change it
// wants, and writes only what differs: the route's destination list, and
// the match routes before it.
//
// The write is one JSON patch that first tests the resourceVersion it was
// computed from, and the route's name at its index: if anyone changed the
// VirtualService in between, the patch fails as a whole and nothing is
// written. It is then recomputed from a fresh read. A failure with the
// object unchanged is not a race (validation, RBAC, the network) and is
// returned at once.
func (r *Router) patchRoute(ctx context.Context, t traffic.Target, edit func(located) (change, error)) error {
	var lastErr error
	var lastVersion string
	for attempt := range maxAttempts {
		l, err := r.locate(ctx, t, attempt > 0)
		if err != nil {
			return err
		}
		if lastErr != nil && l.vs.ResourceVersion == lastVersion {
			return lastErr
		}
		c, err := edit(l)
		if err != nil {
			return err
		}
		ops, what := l.patchOps(c)
		if len(ops) == 0 {
			return nil
		}
		err = r.patch(ctx, l, ops, what)
		if err == nil {
			return nil
		}
		lastErr, lastVersion = err, l.vs.ResourceVersion
	}
	return fmt.Errorf("gave up after %d concurrent edits: %w", maxAttempts, lastErr)
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitzero"`
}

// patchOps returns the operations that make l's VirtualService have c
// (none when it has), and what they change, for errors. The route's
// destinations are replaced first, while its index is still the one read;
// then the match routes before it are replaced in place, added, or
// removed, which shifts the route.
func (l located) patchOps(c change) ([]jsonPatchOp, string) {
	var ops []jsonPatchOp
	if c.route != nil && !equalDestinations(c.route, l.route.GetRoute()) {
		ops = append(ops, jsonPatchOp{Op: "replace", Path: fmt.Sprintf("/spec/http/%d/route", l.ref.index), Value: c.route})
	}
	at := func(i int) string { return fmt.Sprintf("/spec/http/%d", l.matchesFrom+i) }
	matchOps := len(ops)
	for i, m := range c.matches {
		switch {
		case i >= len(l.matches):
			ops = append(ops, jsonPatchOp{Op: "add", Path: at(i), Value: m})
		case !proto.Equal(m, l.matches[i]):
			ops = append(ops, jsonPatchOp{Op: "replace", Path: at(i), Value: m})
		}
	}
	for range len(l.matches) - len(c.matches) {
		ops = append(ops, jsonPatchOp{Op: "remove", Path: at(len(c.matches))})
	}
	var what string
	switch {
	case len(ops) == 0:
		return nil, ""
	case matchOps == 0:
		what = " (the match routes before it)"
	case len(ops) > matchOps:
		what = ".route, and the match routes before it"
	default:
		what = ".route"
	}
	guard := []jsonPatchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: l.vs.ResourceVersion}}
	if l.ref.name != "" {
		guard = append(guard, jsonPatchOp{Op: "test", Path: fmt.Sprintf("/spec/http/%d/name", l.ref.index), Value: l.ref.name})
	}
	return append(guard, ops...), what
}

func (r *Router) patch(ctx context.Context, l located, ops []jsonPatchOp, what string) error {
	body, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("virtualservice %s/%s: %s%s: encode patch: %w", l.vs.Namespace, l.vs.Name, l.ref, what, err)
	}
	if err := traffic.Fenced(ctx); err != nil {
		return err
	}
	patched, err := r.client.NetworkingV1().VirtualServices(l.vs.Namespace).Patch(ctx, l.vs.Name, types.JSONPatchType, body, metav1.PatchOptions{FieldManager: traffic.FieldManager})
	if err == nil {
		r.noteWrite(patched, l.vs.Namespace, l.vs.Name)
	}
	if err != nil {
		return fmt.Errorf("virtualservice %s/%s: %s%s: patch: %w", l.vs.Namespace, l.vs.Name, l.ref, what, err)
	}
	return nil
}
