package engine

import (
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// ownWrites remembers this replica's last write of each Flight: the
// resourceVersion the API server gave it, the Flight as written until the
// cache shows it, and when this replica created it, if it did. It is
// memory only: after a restart it knows nothing, and every check it saves
// is made the long way again.
type ownWrites struct {
	mu    sync.Mutex
	byKey map[string]ownWrite
}

type ownWrite struct {
	version string
	// created is when this replica created the Flight (zero if it did
	// not), and flight the Flight as last written here, until the cache
	// shows that version or a later one.
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
	w.flight = f.DeepCopy()
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

// created returns, for a read that misses the cache, the Flight key as
// this replica last wrote it, if it created it less than createdFor before
// now: the cache does not show it yet.
func (o *ownWrites) created(key string, now time.Time) *v1alpha1.Flight {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.byKey[key]
	if !ok || w.flight == nil || w.created.IsZero() || now.Sub(w.created) >= createdFor {
		return nil
	}
	return w.flight.DeepCopy()
}

// newer returns Flight key as this replica last wrote it if that is newer
// than cached, the cache's (its watch has not delivered the write yet), or
// nil. A look that decided from the cache's older version would decide
// again what the write already did, and fail on its resourceVersion: in a
// burst of rollouts, when the API server's watches run seconds behind,
// most looks would, each retried with backoff. Versions are compared as
// Kubernetes lets clients (k8s.io/apimachinery's CompareResourceVersion);
// if they do not compare (not the integers etcd gives), the cache is
// believed, as before. Once the cache shows the write or a later version,
// the copy is dropped.
func (o *ownWrites) newer(key string, cached *v1alpha1.Flight) *v1alpha1.Flight {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.byKey[key]
	if !ok || w.flight == nil {
		return nil
	}
	if c, err := resourceversion.CompareResourceVersion(w.flight.ResourceVersion, cached.ResourceVersion); err == nil && c > 0 {
		return w.flight.DeepCopy()
	}
	w.flight = nil
	o.byKey[key] = w
	return nil
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

// ownPauses remembers this replica's last write of each Deployment's
// spec.paused: the resourceVersion it gave, and which way. An unpaused read
// is fledge's own doing when that write was a resume (a promotion, a
// restore; or a pause after it failed), or when the read is older than the
// write of a pause (the Deployments' watch trails it); otherwise someone
// else resumed the Deployment. Memory only, like ownWrites: after a
// restart the caches are listed anew, after every write the last leader
// made.
type ownPauses struct {
	mu    sync.Mutex
	byKey map[string]pauseWrite
}

type pauseWrite struct {
	version string
	paused  bool
}

func (o *ownPauses) wrote(d *appsv1.Deployment) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byKey == nil {
		o.byKey = map[string]pauseWrite{}
	}
	o.byKey[d.Namespace+"/"+d.Name] = pauseWrite{version: d.ResourceVersion, paused: d.Spec.Paused}
}

// explains reports whether fledge's own last write of d's spec.paused
// explains d, read unpaused. Versions that do not compare are not taken
// as older.
func (o *ownPauses) explains(d *appsv1.Deployment) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.byKey[d.Namespace+"/"+d.Name]
	if !ok {
		return false
	}
	if !w.paused {
		return true
	}
	c, err := resourceversion.CompareResourceVersion(w.version, d.ResourceVersion)
	return err == nil && c > 0
}

func (o *ownPauses) forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.byKey, key)
}
