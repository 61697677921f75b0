package istio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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

// located is the target's route in its user-owned VirtualService, as read.
type located struct {
	vs    *istionetv1.VirtualService
	ref   routeRef
	route *networkingv1.HTTPRoute
}

// conflict is an error about a field of the VirtualService that a person
// must change before fledge can go on.
func (l located) conflict(p *problem) error {
	return fmt.Errorf("virtualservice %s/%s: %s%s: %s: %w", l.vs.Namespace, l.vs.Name, l.ref, p.field, p.message, traffic.ErrConflict)
}

// checkOwned is Ensure for a user-owned VirtualService: it writes nothing,
// since until the first SetWeights the route is already what fledge wants.
func (r *Router) checkOwned(ctx context.Context, t traffic.Target) error {
	l, err := r.locate(ctx, t)
	if err != nil {
		return err
	}
	if _, _, p := stableDestination(l.route.GetRoute(), servicesOf(t)); p != nil {
		return l.conflict(p)
	}
	return nil
}

func (r *Router) setOwned(ctx context.Context, t traffic.Target, w traffic.Weights) error {
	return r.patchRoute(ctx, t, func(l located) ([]*networkingv1.HTTPRouteDestination, error) {
		stable, hasCanary, p := stableDestination(l.route.GetRoute(), servicesOf(t))
		if p != nil {
			return nil, l.conflict(p)
		}
		if w.Canary == 0 {
			// All on stable is the route as its owner wrote it: a leftover
			// zero-weight canary destination would be drift in their
			// GitOps repository after every rollout.
			if !hasCanary {
				return nil, nil
			}
			return plainDestinations(stable), nil
		}
		return splitDestinations(stable, t.Canary, w), nil
	})
}

func (r *Router) ownedWeights(ctx context.Context, t traffic.Target) (traffic.Weights, error) {
	l, err := r.locate(ctx, t)
	if err != nil {
		return traffic.Weights{}, err
	}
	w, p := readSplit(l.route.GetRoute(), servicesOf(t))
	if p != nil {
		return traffic.Weights{}, l.conflict(p)
	}
	return w, nil
}

// releaseOwned puts the stable destination back alone. A route without a
// canary destination is left exactly as it is, so that releasing a target
// fledge never split does not even reformat the owner's weight.
func (r *Router) releaseOwned(ctx context.Context, t traffic.Target) error {
	err := r.patchRoute(ctx, t, func(l located) ([]*networkingv1.HTTPRouteDestination, error) {
		stable, hasCanary, p := stableDestination(l.route.GetRoute(), servicesOf(t))
		if p != nil {
			return nil, l.conflict(p)
		}
		if !hasCanary {
			return nil, nil
		}
		return plainDestinations(stable), nil
	})
	if errors.Is(err, errMissing) {
		return nil
	}
	return err
}

// locate reads the user-owned VirtualService and finds the target's route:
// the http route named t.Route, or the only one when t.Route is empty.
func (r *Router) locate(ctx context.Context, t traffic.Target) (located, error) {
	vs, err := r.client.NetworkingV1().VirtualServices(t.Namespace).Get(ctx, t.VirtualService, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return located{}, fmt.Errorf("virtualservice %s/%s: named by the target but not found: %w: %w", t.Namespace, t.VirtualService, errMissing, traffic.ErrConflict)
	}
	if err != nil {
		return located{}, errorIn(t.Namespace, t.VirtualService, "get", err)
	}
	http := vs.Spec.GetHttp()
	if t.Route == "" {
		if len(http) != 1 {
			return located{}, fmt.Errorf("virtualservice %s/%s: spec.http: %d routes; the target must name the one fledge splits: %w", vs.Namespace, vs.Name, len(http), traffic.ErrConflict)
		}
		return located{vs, routeRef{0, http[0].GetName()}, http[0]}, nil
	}
	found := -1
	for i, route := range http {
		if route.GetName() != t.Route {
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
	return located{vs, routeRef{found, t.Route}, http[found]}, nil
}

// patchRoute reads the target's route, lets edit compute its new
// destination list (nil to leave it alone), and writes only that list.
//
// The write is a JSON patch that first tests the resourceVersion it was
// computed from, and the route's name at its index: if anyone changed the
// VirtualService in between, the patch fails as a whole and nothing is
// written. It is then recomputed from a fresh read. A failure with the
// object unchanged is not a race (validation, RBAC, the network) and is
// returned at once.
func (r *Router) patchRoute(ctx context.Context, t traffic.Target, edit func(located) ([]*networkingv1.HTTPRouteDestination, error)) error {
	var lastErr error
	var lastVersion string
	for range maxAttempts {
		l, err := r.locate(ctx, t)
		if err != nil {
			return err
		}
		if lastErr != nil && l.vs.ResourceVersion == lastVersion {
			return lastErr
		}
		dests, err := edit(l)
		if err != nil || dests == nil {
			return err
		}
		if equalDestinations(dests, l.route.GetRoute()) {
			return nil
		}
		err = r.patchDestinations(ctx, l, dests)
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
	Value any    `json:"value"`
}

func (r *Router) patchDestinations(ctx context.Context, l located, dests []*networkingv1.HTTPRouteDestination) error {
	base := fmt.Sprintf("/spec/http/%d", l.ref.index)
	ops := []jsonPatchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: l.vs.ResourceVersion}}
	if l.ref.name != "" {
		ops = append(ops, jsonPatchOp{Op: "test", Path: base + "/name", Value: l.ref.name})
	}
	ops = append(ops, jsonPatchOp{Op: "replace", Path: base + "/route", Value: dests})
	body, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("virtualservice %s/%s: %s.route: encode patch: %w", l.vs.Namespace, l.vs.Name, l.ref, err)
	}
	_, err = r.client.NetworkingV1().VirtualServices(l.vs.Namespace).Patch(ctx, l.vs.Name, types.JSONPatchType, body, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("virtualservice %s/%s: %s.route: patch: %w", l.vs.Namespace, l.vs.Name, l.ref, err)
	}
	return nil
}
