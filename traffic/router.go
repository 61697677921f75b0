package traffic

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Target names what a Router shifts traffic for: one app in one namespace.
// It is deliberately narrow (no Deployment, no Flight): a router needs the
// names of the two Services and where the routing lives, nothing more.
type Target struct {
	Namespace string
	// Name is the app's name (the user's Deployment); generated objects are
	// named after it.
	Name string
	// Host is the host clients call, as the VirtualService lists it: the
	// user's Service name (short names resolve in Namespace, as in Istio).
	Host string
	// Stable and Canary are the Services traffic is split between: the
	// user's own Service and fledge's "<name>-canary".
	Stable, Canary string
	// VirtualService, when set, is a VirtualService the team owns: only the
	// destinations and weights of its route named Route are changed, and
	// everything else in it is left exactly as the owner wrote it. Route may
	// be empty only if that VirtualService has a single http route.
	// When VirtualService is empty the router owns a VirtualService of its
	// own for Host, named Name.
	VirtualService, Route string
	// Owner, if set, owns generated objects, so that deleting it (the
	// Flight) garbage-collects them.
	Owner *metav1.OwnerReference
}

// String names the target in errors and logs.
func (t Target) String() string { return t.Namespace + "/" + t.Name }

// Weights is an absolute split of a target's traffic, in percent.
type Weights struct {
	Stable, Canary int32
}

// Validate rejects a split that is not two shares in 0..100 adding to 100.
func (w Weights) Validate() error {
	if w.Stable < 0 || w.Canary < 0 || w.Stable+w.Canary != 100 {
		return fmt.Errorf("weights stable=%d canary=%d: want two shares in 0..100 that add up to 100", w.Stable, w.Canary)
	}
	return nil
}

// Router moves a target's traffic between its stable and canary Services.
// Every method is idempotent and takes absolute values, so a retried or
// repeated call (after a crash, say) converges on the same state.
type Router interface {
	// Ensure makes the routing exist and be usable for t: a generated
	// VirtualService is created (all traffic to stable) or repaired; a
	// user-owned one is checked (its route exists and sends traffic to
	// Stable). It never changes the weights of an existing split.
	Ensure(ctx context.Context, t Target) error
	// SetWeights sets the split, absolutely. Invalid weights are rejected
	// and change nothing. Routing that is not there (never ensured, or
	// released) is set up first, as Ensure would, so the outcome does not
	// depend on what came before.
	SetWeights(ctx context.Context, t Target, w Weights) error
	// Weights reads the split back from the cluster, as the mesh will
	// apply it. A route with no canary destination reads as 100/0, and so
	// does a released target: plain routing sends everything to Stable.
	Weights(ctx context.Context, t Target) (Weights, error)
	// Release restores plain routing: the generated VirtualService is
	// deleted; in a user-owned one the route goes back to its stable
	// destination alone, at full weight. Releasing what is already
	// released is not an error.
	Release(ctx context.Context, t Target) error
}

// ErrConflict reports routing that fledge must not take over, for example
// a host already routed by a VirtualService the target does not name, or
// a named route that was edited into a shape fledge cannot manage. It is
// terminal until a person changes something: retrying will not help.
var ErrConflict = errors.New("routing conflict")
