package api

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Backend is what the service needs from the engine. The engine implements
// it over its informer caches, its work queue and its Deployment client;
// apitest.Backend is a fake for tests.
//
// Errors: return a Kubernetes NotFound (apierrors) for a Flight that does
// not exist, a *NotLeaderError when this replica may not act, one of the
// Err* values below (wrapped, with the details in the message) for refusals
// the caller must fix, or a gRPC status error to choose the code yourself.
// Anything else is reported as codes.Internal, except the API server's
// retriable errors (conflict, timeout, throttling, unavailable), which are
// codes.Unavailable.
type Backend interface {
	// List returns the Flights of a namespace whose Deployments match
	// selector (labels.Everything() for all), from the informer cache.
	// The service sorts them; they must not be changed by anyone.
	List(ctx context.Context, namespace string, selector labels.Selector) ([]*v1alpha1.Flight, error)
	// Get returns one Flight, from the informer cache; a Kubernetes
	// NotFound error if the Deployment has no Flight. It must not be
	// changed by anyone.
	Get(ctx context.Context, namespace, name string) (*v1alpha1.Flight, error)
	// Act hands a manual action to the controller and waits until the
	// decision that took it (or recognised its request id as already
	// taken) is written. It returns the Flight as written and whether the
	// request id had been taken before (a replay: nothing was done again,
	// and the Flight is the current one).
	//
	// Act checks, in this order and atomically with the decision: the
	// request id (a replay answers at once; the same id for another kind
	// of action is ErrRequestIDReused); req.Revision, if set, against the
	// canary revision (the rejected revision for ActionRetry):
	// ErrRevisionMismatch; then whether the action fits the Flight's
	// state: ErrNotApplicable. The service checks req.Revision against
	// the cached Flight before calling, for a prompt answer, but only Act
	// can check it without a race.
	Act(ctx context.Context, namespace, name string, req Action) (*v1alpha1.Flight, bool, error)
	// SetImage sets one container's image in the Deployment's pod
	// template (containers first, then init containers), with a patch
	// that fails if the Deployment changed meanwhile. It reports the
	// template's revision hash after the call (the pending revision to
	// wait for), whether anything changed, the container's previous
	// image, and whether the request id had been taken before (then
	// nothing was done again and the first call's outcome is reported).
	// An unknown container is ErrUnknownContainer.
	SetImage(ctx context.Context, namespace, name string, req ImageRequest) (ImageChange, error)
	// Subscribe streams the changes of the Flights of a namespace (of one
	// Flight if name is set; of those whose Deployments match selector,
	// which is nil or labels.Everything() for all) from the moment it
	// returns until ctx ends. Events of one Flight arrive in order.
	//
	// The channel is closed when ctx ends, or earlier if the subscriber
	// fell behind (its buffer was full when an event came): the service
	// then ends the watch with codes.ResourceExhausted and the client
	// resumes. Broadcaster implements all of this.
	Subscribe(ctx context.Context, namespace, name string, selector labels.Selector) (<-chan FlightEvent, error)
	// Leader reports whether this replica acts (holds the leader Lease),
	// and the identity of the replica that does ("" if none is known).
	// Mutating calls are refused with codes.Unavailable on other
	// replicas; reads are served by every replica.
	Leader() (isLeader bool, identity string)
}

// Action kinds as the API names them: retry is rollout's; set-image is
// the API's own (it changes the Deployment, not the Flight).
const (
	// ActionRetry canaries the rejected revision again.
	ActionRetry = v1alpha1.ActionRetry
	// ActionSetImage is recorded for SetImage; it never reaches Act.
	ActionSetImage = v1alpha1.ActionSetImage
)

// Action is a manual action asked for through the API.
type Action struct {
	// Kind is promote, promote-full, abort, pause, resume or retry.
	Kind v1alpha1.ActionKind
	// By is who, through what: "api:<kubernetes user>".
	By string
	// Reason is why, for people; at most 256 characters, required for
	// abort.
	Reason string
	// RequestID is chosen by the caller and reused when it retries: an
	// action whose request id was taken is not taken again.
	RequestID string
	// Revision, if set, is a precondition: the action applies only while
	// this is the canary revision (the rejected one, for retry).
	Revision string
}

// ImageRequest is a SetImage call.
type ImageRequest struct {
	Container string
	Image     string
	RequestID string
	By        string
	Reason    string
}

// ImageChange is what SetImage did.
type ImageChange struct {
	// Revision is the pod template hash the Deployment asks for after the
	// call, as the controller computes revisions (pod-template-hash).
	Revision string
	// Changed is false when the container already had the image.
	Changed bool
	// Previous is the container's image before the call.
	Previous string
	// Replayed: the request id had been taken; nothing was done again.
	Replayed bool
}

// Watch event types, as in Kubernetes watches.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
)

// FlightEvent is one change of a Flight.
type FlightEvent struct {
	// Type is EventAdded, EventModified or EventDeleted.
	Type string
	// Flight is the Flight after the change (its last state, for
	// EventDeleted). It is shared by every subscriber: nobody may change it.
	Flight *v1alpha1.Flight
	// Labels are the labels of the Flight's Deployment, matched against
	// label selectors (Flights carry fledge's labels only).
	Labels labels.Set

	// converted is the Flight as the API sends it, converted once for all
	// the watchers of a Broadcaster (nil: each converts it).
	converted *lazyFlight
}

// Refusals a Backend returns, wrapped with the details: the service maps
// them to codes and passes their message on.
var (
	// ErrNotApplicable: the action does not fit the Flight's state
	// (promoting with no canary in flight, say). codes.FailedPrecondition.
	ErrNotApplicable = errors.New("the action does not fit the flight's state")
	// ErrRevisionMismatch: the request's revision precondition does not
	// hold. codes.FailedPrecondition.
	ErrRevisionMismatch = errors.New("revision precondition failed")
	// ErrRequestIDReused: the request id was taken by another call.
	// codes.InvalidArgument.
	ErrRequestIDReused = errors.New("request id already used for another call")
	// ErrUnknownContainer: the Deployment has no container of that name.
	// codes.InvalidArgument.
	ErrUnknownContainer = errors.New("no such container")
)

// NotLeaderError is returned by a replica that may not act. Leader is the
// identity of the one that does, if known.
type NotLeaderError struct {
	Leader string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "this fledge replica is not the leader, and no leader is known yet: retry shortly"
	}
	return fmt.Sprintf("this fledge replica is not the leader; the leader is %q: retry (on the leader's replica)", e.Leader)
}
