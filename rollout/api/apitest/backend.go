package apitest

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Backend is an in-memory api.Backend. Tests put Flights in it and change
// them; every change gets a new resource version (a counter, so versions
// compare as the API server's do) and is published to its Broadcaster.
// Stored Flights are never changed in place: each change stores a new
// copy, so what List, Get and subscribers hold stays as it was.
//
// Act applies actions roughly as the controller would (enough for
// clients to see an effect), remembers request ids, and reports replays.
type Backend struct {
	bc *api.Broadcaster

	mu       sync.Mutex
	flights  map[types.NamespacedName]*entry
	rv       int64
	leader   bool
	leaderID string
	taken    map[string]taken // by namespace/name/request id
	calls    []Call
	actErr   error
	now      func() time.Time
}

type entry struct {
	flight     *v1alpha1.Flight
	labels     labels.Set
	containers []container
}

type container struct{ name, image string }

type taken struct {
	kind   v1alpha1.ActionKind
	change api.ImageChange
}

// Call is one call of Act or SetImage as the Backend received it.
type Call struct {
	Namespace, Name string
	Action          api.Action       // Act
	Image           api.ImageRequest // SetImage
	Replayed        bool
}

// NewBackend returns an empty Backend whose subscribers may each have
// buffer events waiting (api.DefaultBroadcastBuffer if buffer <= 0). It is
// the leader, as "fledge-0".
func NewBackend(buffer int) *Backend {
	return &Backend{
		bc:       api.NewBroadcaster(buffer),
		flights:  map[types.NamespacedName]*entry{},
		leader:   true,
		leaderID: "fledge-0",
		taken:    map[string]taken{},
		now:      func() time.Time { return time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) },
	}
}

var _ api.Backend = (*Backend)(nil)

// NewFlight returns a Flight of policy "standard" for host
// <name>.<namespace>.svc with status st.
func NewFlight(namespace, name string, st v1alpha1.FlightStatus) *v1alpha1.Flight {
	return &v1alpha1.Flight{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       v1alpha1.FlightSpec{Deployment: name, Policy: "standard", Host: name + "." + namespace + ".svc"},
		Status:     st,
	}
}

// Broadcaster is the Backend's, for tests that watch its subscribers.
func (b *Backend) Broadcaster() *api.Broadcaster { return b.bc }

// Put stores a copy of f (created, or replacing the Flight of its name)
// with the Deployment's labels, and publishes it. It returns the copy
// stored, with its uid and resource version.
func (b *Backend) Put(f *v1alpha1.Flight, deploymentLabels map[string]string) *v1alpha1.Flight {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := types.NamespacedName{Namespace: f.Namespace, Name: f.Name}
	c := clone(f)
	typ := api.EventAdded
	e, ok := b.flights[key]
	if ok {
		typ = api.EventModified
		c.UID, c.CreationTimestamp = e.flight.UID, e.flight.CreationTimestamp
	} else {
		e = &entry{containers: []container{{name: "app", image: "registry.example/" + f.Name + ":1"}}}
		b.flights[key] = e
		if c.UID == "" {
			c.UID = types.UID(fmt.Sprintf("uid-%s-%s-%d", f.Namespace, f.Name, b.rv+1))
		}
		if c.CreationTimestamp.IsZero() {
			c.CreationTimestamp = metav1.NewTime(b.now())
		}
	}
	if deploymentLabels != nil {
		e.labels = labels.Set(deploymentLabels)
	}
	b.storeLocked(e, c, typ)
	return c
}

// Update changes a Flight's status, stores and publishes it. It panics if
// there is no such Flight: a test bug.
func (b *Backend) Update(namespace, name string, change func(*v1alpha1.FlightStatus)) *v1alpha1.Flight {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.flights[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		panic(fmt.Sprintf("apitest: no flight %s/%s", namespace, name))
	}
	c := clone(e.flight)
	change(&c.Status)
	b.storeLocked(e, c, api.EventModified)
	return c
}

// Delete removes a Flight and publishes its deletion.
func (b *Backend) Delete(namespace, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := types.NamespacedName{Namespace: namespace, Name: name}
	e, ok := b.flights[key]
	if !ok {
		return
	}
	delete(b.flights, key)
	c := clone(e.flight)
	b.rv++
	c.ResourceVersion = strconv.FormatInt(b.rv, 10)
	b.bc.Publish(api.FlightEvent{Type: api.EventDeleted, Flight: c, Labels: e.labels})
}

func (b *Backend) storeLocked(e *entry, f *v1alpha1.Flight, typ string) {
	b.rv++
	f.ResourceVersion = strconv.FormatInt(b.rv, 10)
	e.flight = f
	b.bc.Publish(api.FlightEvent{Type: typ, Flight: f, Labels: e.labels})
}

func clone(f *v1alpha1.Flight) *v1alpha1.Flight {
	return f.DeepCopyObject().(*v1alpha1.Flight)
}

// SetLeader sets what Leader reports.
func (b *Backend) SetLeader(isLeader bool, identity string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leader, b.leaderID = isLeader, identity
}

// FailActs makes Act and SetImage fail with err (nil: succeed again).
func (b *Backend) FailActs(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.actErr = err
}

// Calls returns the calls of Act and SetImage so far, replays included.
func (b *Backend) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// List implements api.Backend.
func (b *Backend) List(_ context.Context, namespace string, selector labels.Selector) ([]*v1alpha1.Flight, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*v1alpha1.Flight
	for key, e := range b.flights {
		if key.Namespace == namespace && (selector == nil || selector.Matches(e.labels)) {
			out = append(out, e.flight)
		}
	}
	return out, nil
}

// Get implements api.Backend.
func (b *Backend) Get(_ context.Context, namespace, name string) (*v1alpha1.Flight, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.flights[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		return nil, apierrors.NewNotFound(v1alpha1.FlightResource.GroupResource(), name)
	}
	return e.flight, nil
}

// Subscribe implements api.Backend.
func (b *Backend) Subscribe(ctx context.Context, namespace, name string, selector labels.Selector) (<-chan api.FlightEvent, error) {
	return b.bc.Subscribe(ctx, namespace, name, selector)
}

// Leader implements api.Backend.
func (b *Backend) Leader() (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leader, b.leaderID
}

// Act implements api.Backend: it checks the request id, the revision
// precondition and the phase, as the controller does, and applies the
// action crudely.
func (b *Backend) Act(_ context.Context, namespace, name string, a api.Action) (*v1alpha1.Flight, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	call := Call{Namespace: namespace, Name: name, Action: a}
	defer func() { b.calls = append(b.calls, call) }()
	if b.actErr != nil {
		return nil, false, b.actErr
	}
	if !b.leader {
		return nil, false, &api.NotLeaderError{Leader: b.leaderID}
	}
	e, ok := b.flights[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		return nil, false, apierrors.NewNotFound(v1alpha1.FlightResource.GroupResource(), name)
	}
	id := namespace + "/" + name + "/" + a.RequestID
	if t, ok := b.taken[id]; ok {
		if t.kind != a.Kind {
			return nil, false, fmt.Errorf("request id %q was a %s: %w", a.RequestID, t.kind, api.ErrRequestIDReused)
		}
		call.Replayed = true
		return e.flight, true, nil
	}
	st := e.flight.Status
	target := st.CanaryRevision
	if a.Kind == api.ActionRetry {
		target = st.RejectedRevision
	}
	if a.Revision != "" && a.Revision != target {
		return nil, false, fmt.Errorf("revision is %q, not %q: %w", target, a.Revision, api.ErrRevisionMismatch)
	}
	c := clone(e.flight)
	if err := apply(&c.Status, a.Kind); err != nil {
		return nil, false, err
	}
	c.Status.LastAction = &v1alpha1.ActionRecord{Kind: a.Kind, By: a.By, Reason: a.Reason, At: metav1.NewTime(b.now())}
	b.taken[id] = taken{kind: a.Kind}
	b.storeLocked(e, c, api.EventModified)
	return c, false, nil
}

// apply is a crude rendering of what the controller does with an action.
func apply(st *v1alpha1.FlightStatus, kind v1alpha1.ActionKind) error {
	inFlight := st.Phase == v1alpha1.PhaseProgressing || st.Phase == v1alpha1.PhasePaused
	refuse := func() error {
		return fmt.Errorf("%s while %s: %w", kind, st.Phase, api.ErrNotApplicable)
	}
	switch kind {
	case v1alpha1.ActionPromote:
		if !inFlight {
			return refuse()
		}
		if int(st.Step)+1 >= len(st.Steps) {
			st.Phase, st.CanaryWeight = v1alpha1.PhasePromoting, 100
			break
		}
		st.Step++
		st.CanaryWeight = st.Steps[st.Step]
	case v1alpha1.ActionPromoteFull:
		if !inFlight {
			return refuse()
		}
		st.Phase, st.CanaryWeight = v1alpha1.PhasePromoting, 100
	case v1alpha1.ActionAbort:
		if !inFlight && st.Phase != v1alpha1.PhasePromoting {
			return refuse()
		}
		st.Phase, st.CanaryWeight, st.RejectedRevision = v1alpha1.PhaseAborted, 0, st.CanaryRevision
	case v1alpha1.ActionPause:
		if st.Phase != v1alpha1.PhaseProgressing {
			return refuse()
		}
		st.Phase = v1alpha1.PhasePaused
	case v1alpha1.ActionResume:
		if st.Phase != v1alpha1.PhasePaused {
			return refuse()
		}
		st.Phase = v1alpha1.PhaseProgressing
	case api.ActionRetry:
		if st.RejectedRevision == "" {
			return refuse()
		}
		st.Phase, st.Step, st.CanaryWeight, st.RejectedRevision = v1alpha1.PhaseProgressing, -1, 0, ""
	default:
		return fmt.Errorf("unknown action %q: %w", kind, api.ErrNotApplicable)
	}
	return nil
}

// SetImage implements api.Backend. The Deployment of every Flight starts
// with one container "app"; the revision is a hash of the images.
func (b *Backend) SetImage(_ context.Context, namespace, name string, req api.ImageRequest) (api.ImageChange, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	call := Call{Namespace: namespace, Name: name, Image: req}
	defer func() { b.calls = append(b.calls, call) }()
	if b.actErr != nil {
		return api.ImageChange{}, b.actErr
	}
	if !b.leader {
		return api.ImageChange{}, &api.NotLeaderError{Leader: b.leaderID}
	}
	e, ok := b.flights[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		return api.ImageChange{}, apierrors.NewNotFound(v1alpha1.FlightResource.GroupResource(), name)
	}
	id := namespace + "/" + name + "/" + req.RequestID
	if t, ok := b.taken[id]; ok {
		if t.kind != api.ActionSetImage {
			return api.ImageChange{}, fmt.Errorf("request id %q was a %s: %w", req.RequestID, t.kind, api.ErrRequestIDReused)
		}
		call.Replayed = true
		ch := t.change
		ch.Replayed = true
		return ch, nil
	}
	i := slices.IndexFunc(e.containers, func(c container) bool { return c.name == req.Container })
	if i < 0 {
		return api.ImageChange{}, fmt.Errorf("deployment %s/%s has no container %q: %w", namespace, name, req.Container, api.ErrUnknownContainer)
	}
	ch := api.ImageChange{Previous: e.containers[i].image, Changed: e.containers[i].image != req.Image}
	e.containers = slices.Clone(e.containers)
	e.containers[i].image = req.Image
	ch.Revision = revisionOf(e.containers)
	b.taken[id] = taken{kind: api.ActionSetImage, change: ch}
	return ch, nil
}

// revisionOf stands in for the pod-template-hash.
func revisionOf(cs []container) string {
	h := fnv.New32a()
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.name + "=" + c.image
	}
	h.Write([]byte(strings.Join(parts, ",")))
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}
