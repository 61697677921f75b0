package engine

import (
	"sync"
	"time"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// ownWrites remembers this replica's last write of each Flight: the
// resourceVersion the API server gave it, and, for a Flight this replica
// created, when and as what (until the cache shows it). It is memory
// only: after a restart it knows nothing, and every check it saves is
// made the long way again.
type ownWrites struct {
	mu    sync.Mutex
	byKey map[string]ownWrite
}

type ownWrite struct {
	version string
	// created is when this replica created the Flight (zero if it did
	// not), and flight the Flight as created, until the cache shows it.
	created time.Time
	flight  *v1alpha1.Flight
}

// createdFor is how long a Flight created here is kept for reads that miss
// the cache: the watch delivers it long before.
const createdFor = time.Minute

// wrote records a write of f (as the API server answered it); created, if
// not zero, says this replica created it then.
func (o *ownWrites) wrote(f *v1alpha1.Flight, created time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byKey == nil {
		o.byKey = map[string]ownWrite{}
	}
	key := f.Namespace + "/" + f.Name
	w := o.byKey[key]
	w.version = f.ResourceVersion
	if !created.IsZero() || w.flight != nil {
		// Created here, or written again before the cache showed it:
		// what a read that misses the cache gets is the latest.
		w.flight = f.DeepCopy()
	}
	if !created.IsZero() {
		w.created = created
	}
	o.byKey[key] = w
}

// isLast reports whether f, as read, is this replica's last write of it:
// then nothing has changed it since (another writer would have given it a
// new resourceVersion).
func (o *ownWrites) isLast(f *v1alpha1.Flight) bool {
	if f.ResourceVersion == "" {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byKey[f.Namespace+"/"+f.Name].version == f.ResourceVersion
}

// created returns the Flight key as this replica created it, if it did so
// less than createdFor before now and the cache has not shown it yet
// (shown: the cache has it now, and the copy is dropped).
func (o *ownWrites) created(key string, now time.Time, shown bool) *v1alpha1.Flight {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.byKey[key]
	if !ok || w.flight == nil {
		return nil
	}
	if shown || now.Sub(w.created) >= createdFor {
		w.flight = nil
		o.byKey[key] = w
		return nil
	}
	return w.flight.DeepCopy()
}

// createdAt is when this replica created Flight key, or zero.
func (o *ownWrites) createdAt(key string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byKey[key].created
}

// forget drops what is known of Flight key (deleted, or found gone).
func (o *ownWrites) forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.byKey, key)
}

// SetupQuiet is how long after creating a Flight this replica leaves its
// status unwritten while it only sets the Flight up (see settingUp).
const SetupQuiet = 10 * time.Second

// settingUp reports whether dec only sets up Flight f, created here at
// created (zero: not here, or before a restart), at most SetupQuiet
// before now: it stays Initializing, from a status that is still empty or
// Initializing. Such a decision (pause the Deployment, make the routing,
// wait for both to show) need not be written: its actions are idempotent
// and derived from what is observed, not from the status, so after a crash
// the next look derives them again; and a take-over then writes its status
// once, Idle, instead of two or three times on the way. A set-up that
// takes longer (a Deployment still rolling, routing that cannot be made)
// is written from SetupQuiet on, with its reason.
func settingUp(f *v1alpha1.Flight, dec *rollout.Decision, created, now time.Time) bool {
	was := f.Status.Phase
	if created.IsZero() || now.Sub(created) >= SetupQuiet || dec.Status.Phase != v1alpha1.PhaseInitializing ||
		(was != "" && was != v1alpha1.PhaseInitializing) || dec.Action != nil {
		return false
	}
	for _, a := range dec.Actions {
		switch a.(type) {
		case rollout.SetStablePaused, rollout.EnsureRouting:
		default:
			return false // an Event, a notification, a call: written first, as always
		}
	}
	return true
}
