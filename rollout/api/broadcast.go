package api

import (
	"context"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultBroadcastBuffer is how many events a subscriber may have
// waiting before it is dropped, unless NewBroadcaster is told otherwise.
const DefaultBroadcastBuffer = 256

// Broadcaster fans Flight changes out from one producer (the engine's
// Flight informer event handlers) to many subscribers (Watch streams). It
// implements Backend.Subscribe.
//
// Publish never blocks: each subscriber has its own buffered channel, and
// a subscriber whose buffer is full when an event comes has fallen behind:
// it is dropped (its channel is closed) rather than allowed to hold up the
// producer or the others. Its watch then ends with
// codes.ResourceExhausted, and the client resumes from the last version it
// saw. Subscribers are indexed by namespace and by name, so that a Publish
// costs one look-up plus one non-blocking send per interested subscriber;
// the Flight is converted for the API once per event, not once per
// subscriber.
//
// Events are shared by every subscriber: the producer hands the Flight
// over with Publish and nobody may change it afterwards.
type Broadcaster struct {
	buffer int

	mu          sync.Mutex
	byName      map[types.NamespacedName]map[*subscription]struct{}
	byNamespace map[string]map[*subscription]struct{} // "" for every namespace
	count       int

	dropped atomic.Int64
}

type subscription struct {
	key      types.NamespacedName // Name "" for a whole namespace
	selector labels.Selector      // nil: everything
	ch       chan FlightEvent
	stop     func() bool // releases the context.AfterFunc
	closed   bool        // guarded by Broadcaster.mu
}

// NewBroadcaster returns a Broadcaster whose subscribers may each have
// buffer events waiting (DefaultBroadcastBuffer if buffer <= 0).
func NewBroadcaster(buffer int) *Broadcaster {
	if buffer <= 0 {
		buffer = DefaultBroadcastBuffer
	}
	return &Broadcaster{
		buffer:      buffer,
		byName:      map[types.NamespacedName]map[*subscription]struct{}{},
		byNamespace: map[string]map[*subscription]struct{}{},
	}
}

// Subscribe returns a channel of the changes of the Flights of namespace
// ("" for every namespace), of one Flight if name is set, of those whose
// Deployments match selector (nil or labels.Everything() for all). The
// channel is closed when ctx ends or when the subscriber falls behind.
func (b *Broadcaster) Subscribe(ctx context.Context, namespace, name string, selector labels.Selector) (<-chan FlightEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if selector != nil && selector.Empty() {
		selector = nil
	}
	s := &subscription{
		key:      types.NamespacedName{Namespace: namespace, Name: name},
		selector: selector,
		ch:       make(chan FlightEvent, b.buffer),
	}
	// Registered before s is added: if ctx is already done, remove runs
	// first and marks s closed, and s is never added.
	stop := context.AfterFunc(ctx, func() { b.remove(s) })
	b.mu.Lock()
	defer b.mu.Unlock()
	s.stop = stop
	if s.closed {
		return s.ch, nil
	}
	set := b.set(s.key, true)
	set[s] = struct{}{}
	b.count++
	return s.ch, nil
}

// set returns the subscriber set of a key, creating it if asked to.
func (b *Broadcaster) set(key types.NamespacedName, create bool) map[*subscription]struct{} {
	var m map[*subscription]struct{}
	if key.Name != "" {
		m = b.byName[key]
		if m == nil && create {
			m = map[*subscription]struct{}{}
			b.byName[key] = m
		}
	} else {
		m = b.byNamespace[key.Namespace]
		if m == nil && create {
			m = map[*subscription]struct{}{}
			b.byNamespace[key.Namespace] = m
		}
	}
	return m
}

// Publish sends ev to every interested subscriber, dropping those that
// fell behind. It never blocks on a subscriber.
func (b *Broadcaster) Publish(ev FlightEvent) {
	if ev.Flight == nil {
		return
	}
	if ev.converted == nil {
		ev.converted = &lazyFlight{in: ev.Flight}
	}
	key := types.NamespacedName{Namespace: ev.Flight.Namespace, Name: ev.Flight.Name}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deliver(b.byName[key], ev)
	b.deliver(b.byNamespace[key.Namespace], ev)
	if key.Namespace != "" {
		b.deliver(b.byNamespace[""], ev)
	}
}

func (b *Broadcaster) deliver(set map[*subscription]struct{}, ev FlightEvent) {
	for s := range set {
		if s.selector != nil && !s.selector.Matches(ev.Labels) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			b.dropped.Add(1)
			b.closeLocked(s)
		}
	}
}

// DropAll ends every subscription as if it had fallen behind: their
// watches end with codes.ResourceExhausted and their clients resume. For
// an engine whose cache was rebuilt (a relist) and for tests.
func (b *Broadcaster) DropAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, set := range b.byName {
		for s := range set {
			b.closeLocked(s)
		}
	}
	for _, set := range b.byNamespace {
		for s := range set {
			b.closeLocked(s)
		}
	}
}

// Subscribers returns how many subscriptions are open.
func (b *Broadcaster) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Dropped returns how many subscriptions were dropped for falling behind
// so far (DropAll does not count).
func (b *Broadcaster) Dropped() int64 { return b.dropped.Load() }

func (b *Broadcaster) remove(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked(s)
}

// closeLocked removes s and closes its channel, once.
func (b *Broadcaster) closeLocked(s *subscription) {
	if s.closed {
		return
	}
	s.closed = true
	if s.stop != nil {
		s.stop()
	}
	if set := b.set(s.key, false); set != nil {
		if _, ok := set[s]; ok {
			delete(set, s)
			b.count--
		}
		if len(set) == 0 {
			if s.key.Name != "" {
				delete(b.byName, s.key)
			} else {
				delete(b.byNamespace, s.key.Namespace)
			}
		}
	}
	close(s.ch)
}
