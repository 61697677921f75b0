package engine

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/traffic"
)

// routeConflicts remembers, per Flight, a routing change the router
// refused as a conflict (traffic.ErrConflict): a person must change the
// routing first. For a while it is reported as a routing error, which
// holds the Flight with the router's message; then the change is tried
// again.
type routeConflicts struct {
	mu sync.Mutex
	m  map[string]routeConflict
	// failed: the Flight's last SetWeights failed (any error), so routing
	// that reads otherwise is fledge's own unfinished write, not another
	// writer's (Observed.RoutingWriteFailed).
	failed map[string]bool
}

// writeFailed reports whether key's last SetWeights failed.
func (r *routeConflicts) writeFailed(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed[key]
}

type routeConflict struct {
	msg string
	at  time.Time
}

// conflictMemory is how long a refused routing change is not tried again.
const conflictMemory = 30 * time.Second

func (r *routeConflicts) get(key string, now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[key]
	if !ok || now.Sub(c.at) >= conflictMemory {
		return ""
	}
	return c.msg
}

// record notes the outcome of a decision's actions: a SetWeights or
// EnsureCanary refused as a conflict (routing fledge may not change, or a
// canary or stable Service name taken by an object fledge does not own)
// is remembered, a decision whose SetWeights or EnsureCanary succeeded
// forgets it.
func (r *routeConflicts) record(key string, actions []rollout.Action, err error, now time.Time) {
	set, weights := false, false
	for _, a := range actions {
		switch a.(type) {
		case rollout.SetWeights:
			set, weights = true, true
		case rollout.EnsureCanary:
			set = true
		}
	}
	if !set {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if weights {
		if r.failed == nil {
			r.failed = map[string]bool{}
		}
		if err != nil && strings.Contains(err.Error(), "SetWeights") {
			r.failed[key] = true
		} else if err == nil {
			delete(r.failed, key)
		}
	}
	switch {
	case err != nil && errors.Is(err, traffic.ErrConflict) && (strings.Contains(err.Error(), "SetWeights") || strings.Contains(err.Error(), "EnsureCanary") ||
		strings.Contains(err.Error(), "EnsureBaseline") || strings.Contains(err.Error(), "EnsureComparator") || strings.Contains(err.Error(), "EnsurePrevious")):
		if r.m == nil {
			r.m = map[string]routeConflict{}
		}
		r.m[key] = routeConflict{msg: err.Error(), at: now}
	case err == nil:
		delete(r.m, key)
	}
}
