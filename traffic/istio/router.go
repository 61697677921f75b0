package istio

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"istio.io/client-go/pkg/clientset/versioned"

	"github.com/fledgehq/fledge/traffic"
)

// maxAttempts bounds how often one call re-reads and retries after someone
// else changed the VirtualService between its read and its write. Each
// failed attempt means another writer succeeded, so a handful is plenty;
// past it the caller's own retry (the next reconcile) takes over.
const maxAttempts = 5

// Router is a traffic.Router over Istio VirtualServices. It keeps no state
// of its own but caches: every call reads the cluster (or, WithCache, a
// watch-fed copy of it), so several replicas (or a restarted one) agree.
// It is safe for concurrent use.
type Router struct {
	client versioned.Interface
	// others, if set, caches the VirtualServices of the namespaces routed.
	others *namespaceCaches
	// wrote are the router's own writes that the cache may not show yet,
	// by namespace/name.
	mu    sync.Mutex
	wrote map[string]write
}

var _ traffic.Router = (*Router)(nil)

// New returns a Router that reads and writes VirtualServices through
// client (networking.istio.io/v1).
func New(client versioned.Interface, opts ...Option) *Router {
	r := &Router{client: client}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Ensure creates or repairs the generated VirtualService, or checks that
// the user-owned one has a route fledge can split. See traffic.Router.
func (r *Router) Ensure(ctx context.Context, t traffic.Target) error {
	if err := validateTarget(t); err != nil {
		return err
	}
	if t.VirtualService != "" {
		return r.checkOwned(ctx, t)
	}
	return r.applyGenerated(ctx, t, nil)
}

// SetWeights sets the split, setting up the routing first if it is not
// there (after a Release, say).
func (r *Router) SetWeights(ctx context.Context, t traffic.Target, w traffic.Weights) error {
	if err := validateTarget(t); err != nil {
		return err
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("target %s: %w", t, err)
	}
	if w.Baseline > 0 && t.Baseline == "" {
		return fmt.Errorf("target %s: baseline %d%%: the target names no baseline Service to send it to", t, w.Baseline)
	}
	if w.MirrorCompared && t.Comparator == "" {
		return fmt.Errorf("target %s: mirror %d%% compared: the target names no comparator Service to send the copies to", t, w.Mirror)
	}
	if t.VirtualService != "" {
		return r.setOwned(ctx, t, w)
	}
	return r.applyGenerated(ctx, t, &w)
}

// Weights reads the split from the VirtualService as stored in the
// cluster.
func (r *Router) Weights(ctx context.Context, t traffic.Target) (traffic.Weights, error) {
	if err := validateTarget(t); err != nil {
		return traffic.Weights{}, err
	}
	if t.VirtualService != "" {
		return r.ownedWeights(ctx, t)
	}
	return r.generatedWeights(ctx, t)
}

// Release deletes the generated VirtualService, or puts the user-owned
// route back to its stable destination alone.
func (r *Router) Release(ctx context.Context, t traffic.Target) error {
	if err := validateTarget(t); err != nil {
		return err
	}
	if t.VirtualService != "" {
		return r.releaseOwned(ctx, t)
	}
	return r.releaseGenerated(ctx, t)
}

// validateTarget rejects a target the router cannot act on, before any
// request: a missing name would otherwise surface as a confusing API
// error, or worse, a VirtualService routing nothing.
func validateTarget(t traffic.Target) error {
	var wrong []string
	for _, f := range []struct{ name, value string }{
		{"namespace", t.Namespace}, {"name", t.Name}, {"host", t.Host}, {"stable Service", t.Stable}, {"canary Service", t.Canary},
	} {
		if f.value == "" {
			wrong = append(wrong, "no "+f.name)
		}
	}
	if t.Route != "" && t.VirtualService == "" {
		wrong = append(wrong, fmt.Sprintf("route %q named without a VirtualService", t.Route))
	}
	if t.Stable != "" && fqdn(t.Stable, t.Namespace) == fqdn(t.Canary, t.Namespace) {
		wrong = append(wrong, fmt.Sprintf("stable and canary are the same Service %q", t.Stable))
	}
	// A baseline that is one of the other two would have its share read
	// back as theirs.
	if b := fqdn(t.Baseline, t.Namespace); t.Baseline != "" {
		for _, other := range []struct{ name, host string }{{"stable", t.Stable}, {"canary", t.Canary}} {
			if other.host != "" && fqdn(other.host, t.Namespace) == b {
				wrong = append(wrong, fmt.Sprintf("baseline and %s are the same Service %q", other.name, t.Baseline))
			}
		}
	}
	if len(wrong) > 0 {
		return fmt.Errorf("target %s: %s", t, strings.Join(wrong, "; "))
	}
	return nil
}
