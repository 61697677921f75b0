package traffictest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/fledgehq/fledge/traffic"
)

// Router is an in-memory traffic.Router. Targets are told apart by
// namespace and name. It is safe for concurrent use; the zero value is not
// usable, call NewRouter.
type Router struct {
	mu       sync.Mutex
	routed   map[string]traffic.Weights // targets with routing, by key
	history  map[string][]traffic.Weights
	calls    []Call
	failures []error
}

var _ traffic.Router = (*Router)(nil)

// Call is one call the fake received, in order of arrival.
type Call struct {
	Method string // "Ensure", "SetWeights", "Weights" or "Release"
	Target traffic.Target
	// Weights is what SetWeights was asked for, or what Weights returned.
	Weights traffic.Weights
	Err     error
}

// NewRouter returns a fake with no target routed.
func NewRouter() *Router {
	return &Router{routed: map[string]traffic.Weights{}, history: map[string][]traffic.Weights{}}
}

// FailNext makes the next len(errs) calls, whatever their method, return
// these errors in order, without any effect. Wrap traffic.ErrConflict to
// play a terminal conflict.
func (r *Router) FailNext(errs ...error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, errs...)
}

// History returns the weights SetWeights applied to the target, in order,
// repeats included, across releases: what a rollout test compares with the
// steps it expects. Calls that failed are not in it.
func (r *Router) History(t traffic.Target) []traffic.Weights {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.history[key(t)])
}

// Calls returns every call received so far, failed ones included.
func (r *Router) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Routed returns the target's weights and true while it is routed (ensured
// or set, and not released since).
func (r *Router) Routed(t traffic.Target) (traffic.Weights, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.routed[key(t)]
	return w, ok
}

// Ensure routes the target at 100/0 unless it is routed already.
func (r *Router) Ensure(ctx context.Context, t traffic.Target) error {
	return r.call(ctx, "Ensure", t, traffic.Weights{}, func(k string) (traffic.Weights, error) {
		if _, ok := r.routed[k]; !ok {
			r.routed[k] = traffic.Weights{Stable: 100}
		}
		return traffic.Weights{}, nil
	})
}

// SetWeights routes the target with w.
func (r *Router) SetWeights(ctx context.Context, t traffic.Target, w traffic.Weights) error {
	return r.call(ctx, "SetWeights", t, w, func(k string) (traffic.Weights, error) {
		if err := w.Validate(); err != nil {
			return w, fmt.Errorf("target %s: %w", t, err)
		}
		if w.Baseline > 0 && t.Baseline == "" {
			return w, fmt.Errorf("target %s: baseline %d%%: the target names no baseline Service to send it to", t, w.Baseline)
		}
		if w.MirrorCompared && t.Comparator == "" {
			return w, fmt.Errorf("target %s: mirror %d%% compared: the target names no comparator Service to send the copies to", t, w.Mirror)
		}
		r.routed[k] = w
		r.history[k] = append(r.history[k], w)
		return w, nil
	})
}

// Weights returns the target's weights: 100/0 when it is not routed.
func (r *Router) Weights(ctx context.Context, t traffic.Target) (traffic.Weights, error) {
	var got traffic.Weights
	err := r.call(ctx, "Weights", t, traffic.Weights{}, func(k string) (traffic.Weights, error) {
		var ok bool
		if got, ok = r.routed[k]; !ok {
			got = traffic.Weights{Stable: 100}
		}
		return got, nil
	})
	if err != nil {
		return traffic.Weights{}, err
	}
	return got, nil
}

// Release forgets the target's routing; its history stays.
func (r *Router) Release(ctx context.Context, t traffic.Target) error {
	return r.call(ctx, "Release", t, traffic.Weights{}, func(k string) (traffic.Weights, error) {
		delete(r.routed, k)
		return traffic.Weights{}, nil
	})
}

// call runs one method under the lock, after the checks every method
// shares, and records it. fn returns the weights to record.
func (r *Router) call(ctx context.Context, method string, t traffic.Target, w traffic.Weights, fn func(key string) (traffic.Weights, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := ctx.Err()
	if err == nil && len(r.failures) > 0 {
		err, r.failures = r.failures[0], r.failures[1:]
	}
	if err == nil {
		err = validateTarget(t)
	}
	if err == nil {
		w, err = fn(key(t))
	}
	r.calls = append(r.calls, Call{Method: method, Target: t, Weights: w, Err: err})
	return err
}

func key(t traffic.Target) string { return t.Namespace + "/" + t.Name }

// validateTarget rejects what traffic/istio rejects, so that a rollout
// test that passes with the fake does not build targets the real router
// refuses.
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
	if t.Stable != "" && t.Stable == t.Canary {
		wrong = append(wrong, fmt.Sprintf("stable and canary are the same Service %q", t.Stable))
	}
	if t.Baseline != "" && t.Baseline == t.Stable {
		wrong = append(wrong, fmt.Sprintf("baseline and stable are the same Service %q", t.Baseline))
	}
	if t.Baseline != "" && t.Baseline == t.Canary {
		wrong = append(wrong, fmt.Sprintf("baseline and canary are the same Service %q", t.Baseline))
	}
	if len(wrong) > 0 {
		return fmt.Errorf("target %s: %s", t, strings.Join(wrong, "; "))
	}
	return nil
}
