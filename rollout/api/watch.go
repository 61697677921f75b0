package api

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// Watch sends the selected Flights as they are, then their changes.
//
// fledge serves watches from its informer cache, which keeps no history,
// so resuming works on versions rather than on a log:
//
//   - Without resource_version: an ADDED event for every selected Flight,
//     then SYNCED, then the changes.
//   - With resource_version R: an ADDED event for every selected Flight
//     changed after R, then the changes; no SYNCED. Resource versions of
//     Flights are compared as Kubernetes allows for objects of one
//     resource (k8s.io/apimachinery/pkg/util/resourceversion); where the
//     API server's versions are not comparable integers, only a Flight
//     whose version equals R is skipped. Either way no change after R is
//     missed, and the state of a Flight may come twice: treat ADDED as
//     "upsert". What resuming cannot tell is that a Flight of a namespace
//     watch was deleted while the client was away: watch again without
//     resource_version to be sure of that. A name watch is not affected.
//     Resuming never fails with OUT_OF_RANGE.
//
// Every event carries the version to resume from after it, and a
// BOOKMARK with it comes every ServiceOptions.BookmarkInterval. A watcher
// that falls more than ServiceOptions.WatchQueue events behind is ended
// with codes.ResourceExhausted, naming the version to resume from.
func (s *Service) Watch(req *rolloutpb.WatchRequest, stream grpc.ServerStreamingServer[rolloutpb.WatchEvent]) error {
	ns, name := req.GetNamespace(), req.GetName()
	if err := validateNamespace(ns); err != nil {
		return err
	}
	if name != "" {
		if err := validateTarget(ns, name); err != nil {
			return err
		}
		if strings.TrimSpace(req.GetLabelSelector()) != "" {
			return invalid("label_selector", "is for namespace watches: not with a name")
		}
	}
	sel, err := parseSelector(req.GetLabelSelector())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// Subscribe first, then read the current state: a change in between
	// then comes twice (and is sent once) rather than never.
	events, err := s.backend.Subscribe(ctx, ns, name, sel)
	if err != nil {
		return s.backendError(ctx, err, ns, name)
	}
	initial, err := s.current(ctx, ns, name, sel)
	if err != nil {
		return err
	}
	w := &watcher{
		stream:   stream,
		resumeAt: req.GetResourceVersion(),
		progress: req.GetResourceVersion(),
		seen:     map[string]seenVersion{},
	}
	return w.run(ctx, s, initial, events)
}

// current is the selected Flights as they are now.
func (s *Service) current(ctx context.Context, ns, name string, sel labels.Selector) ([]*v1alpha1.Flight, error) {
	if name != "" {
		f, err := s.backend.Get(ctx, ns, name)
		if apierrors.IsNotFound(err) {
			return nil, nil // it may come: not an error for a watch
		}
		if err != nil {
			return nil, s.backendError(ctx, err, ns, name)
		}
		return []*v1alpha1.Flight{f}, nil
	}
	flights, err := s.backend.List(ctx, ns, sel)
	if err != nil {
		return nil, s.backendError(ctx, err, ns, "")
	}
	return flights, nil
}

type seenVersion struct {
	uid types.UID
	rv  string
}

// watcher is one Watch stream. One goroutine (run's) reads the
// subscription and queues events; another sends them, so that a client
// that stops reading blocks only its sender, and run notices that it
// fell behind when the queue is full.
type watcher struct {
	stream grpc.ServerStreamingServer[rolloutpb.WatchEvent]
	// resumeAt is the request's resource_version; "" for a fresh watch.
	resumeAt string
	// progress is the version to resume from once everything queued so
	// far is delivered.
	progress string
	// seen is the last version queued of each Flight the client knows of.
	seen map[string]seenVersion
}

// outgoing is a queued event and the version to resume from once the
// client has it.
type outgoing struct {
	ev       *rolloutpb.WatchEvent
	resumeAt string
}

func (w *watcher) run(ctx context.Context, s *Service, initial []*v1alpha1.Flight, events <-chan FlightEvent) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	initial = w.initial(initial)
	// Room for the initial state, SYNCED and WatchQueue changes.
	queue := make(chan outgoing, len(initial)+1+s.queue)
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})
	var delivered atomic.Pointer[string] // the resume point the client has
	delivered.Store(&w.resumeAt)
	go func() {
		defer close(senderDone)
		for {
			select {
			case <-ctx.Done():
				return
			case o := <-queue:
				if ctx.Err() != nil {
					return
				}
				if err := w.stream.Send(o.ev); err != nil {
					sendErr <- err
					return
				}
				delivered.Store(&o.resumeAt)
			}
		}
	}()
	// finish ends the stream once the sender has stopped, which it does
	// promptly: its context is done, or its stream is.
	finish := func(err error) error {
		cancel()
		<-senderDone
		return err
	}

	// Ticking before anything is sent: a client that has an event knows
	// that bookmarks will come.
	ticker := s.clock.NewTicker(s.bookmark)
	defer ticker.Stop()
	enqueue := func(ev *rolloutpb.WatchEvent) bool {
		select {
		case queue <- outgoing{ev: ev, resumeAt: w.progress}:
			return true
		default:
			return false
		}
	}
	for _, f := range initial {
		w.seen[f.Name] = seenVersion{uid: f.UID, rv: f.ResourceVersion}
		w.advance(f.ResourceVersion)
		enqueue(&rolloutpb.WatchEvent{Type: rolloutpb.WatchEvent_TYPE_ADDED, Flight: FlightToProto(f), ResourceVersion: w.progress})
	}
	if w.resumeAt == "" {
		enqueue(&rolloutpb.WatchEvent{Type: rolloutpb.WatchEvent_TYPE_SYNCED, ResourceVersion: w.progress})
	}

	for {
		select {
		case <-ctx.Done():
			return finish(status.FromContextError(ctx.Err()).Err())
		case err := <-sendErr:
			return finish(err)
		case <-ticker.C():
			if len(queue) == 0 {
				enqueue(&rolloutpb.WatchEvent{Type: rolloutpb.WatchEvent_TYPE_BOOKMARK, ResourceVersion: w.progress})
			}
		case ev, ok := <-events:
			if ok {
				out := w.filter(ev)
				if out == nil || enqueue(out) {
					continue
				}
			} else if ctx.Err() != nil {
				continue // reported by the ctx.Done case
			}
			// Behind: our queue is full, or the Backend dropped us. The
			// sender may be stuck in Send to a client that does not read;
			// returning ends the stream, which unblocks it, so do not
			// wait for it (grpc-go allows this; see grpc/grpc-go#1229).
			cancel()
			return fellBehind(s.queue, *delivered.Load())
		}
	}
}

func fellBehind(queue int, resumeAt string) error {
	const msg = "watch fell behind (more than %d events waited to be sent)"
	if resumeAt == "" {
		return status.Errorf(codes.ResourceExhausted, msg+"; watch again without a resource_version", queue)
	}
	return status.Errorf(codes.ResourceExhausted, msg+"; resume with resource_version %q", queue, resumeAt)
}

// initial drops the Flights a resuming client has (not changed since its
// version) and orders the others by version, so that the resume point
// after each of them covers exactly the Flights sent so far.
func (w *watcher) initial(flights []*v1alpha1.Flight) []*v1alpha1.Flight {
	out := make([]*v1alpha1.Flight, 0, len(flights))
	for _, f := range flights {
		if w.resumeAt != "" && !newer(f.ResourceVersion, w.resumeAt) {
			w.seen[f.Name] = seenVersion{uid: f.UID, rv: f.ResourceVersion}
			continue
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *v1alpha1.Flight) int {
		return cmp.Or(compareVersions(a.ResourceVersion, b.ResourceVersion), strings.Compare(a.Name, b.Name))
	})
	return out
}

// filter turns a change into the event to send, or nil if the client has
// it already: the subscription starts before the initial state is read,
// so it may repeat what the initial state holds, or be older.
func (w *watcher) filter(ev FlightEvent) *rolloutpb.WatchEvent {
	f := ev.Flight
	if f == nil {
		return nil
	}
	prev, known := w.seen[f.Name]
	if known && prev.uid != f.UID {
		if ev.Type == EventDeleted {
			return nil // an older Flight of that name, which the client never saw
		}
		known = false // a new Flight of that name
	}
	typ := rolloutpb.WatchEvent_TYPE_MODIFIED
	switch {
	case ev.Type == EventDeleted:
		if !known && (w.resumeAt == "" || !newer(f.ResourceVersion, w.resumeAt)) {
			return nil
		}
		delete(w.seen, f.Name)
		typ = rolloutpb.WatchEvent_TYPE_DELETED
	case known && !newer(f.ResourceVersion, prev.rv):
		return nil
	case !known && w.resumeAt != "" && !newer(f.ResourceVersion, w.resumeAt):
		w.seen[f.Name] = seenVersion{uid: f.UID, rv: f.ResourceVersion}
		return nil
	default:
		if !known && (w.resumeAt == "" || ev.Type == EventAdded) {
			typ = rolloutpb.WatchEvent_TYPE_ADDED
		}
		w.seen[f.Name] = seenVersion{uid: f.UID, rv: f.ResourceVersion}
	}
	w.advance(f.ResourceVersion)
	return &rolloutpb.WatchEvent{Type: typ, Flight: ev.proto(), ResourceVersion: w.progress}
}

// advance moves the resume point to rv if it is newer (or if versions
// cannot be compared, to the latest).
func (w *watcher) advance(rv string) {
	if c, err := resourceversion.CompareResourceVersion(rv, w.progress); err != nil || c > 0 {
		w.progress = rv
	}
}

// newer reports whether version a comes after b: compared as Kubernetes
// allows for objects of one resource, or, where the API server's versions
// are not comparable integers, whether they differ.
func newer(a, b string) bool {
	if c, err := resourceversion.CompareResourceVersion(a, b); err == nil {
		return c > 0
	}
	return a != b
}

// compareVersions orders comparable versions; others compare equal.
func compareVersions(a, b string) int {
	c, _ := resourceversion.CompareResourceVersion(a, b)
	return c
}

// newestVersion is the newest version of flights, for a List's
// resource_version: "" if there are none, or if versions do not compare.
func newestVersion(flights []*v1alpha1.Flight) string {
	newest := ""
	for _, f := range flights {
		if newest == "" {
			newest = f.ResourceVersion
			continue
		}
		c, err := resourceversion.CompareResourceVersion(f.ResourceVersion, newest)
		if err != nil {
			return ""
		}
		if c > 0 {
			newest = f.ResourceVersion
		}
	}
	return newest
}
