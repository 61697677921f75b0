package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/engine"
)

// Controller is what Engine needs of the engine's rollout.Controller.
type Controller interface {
	Act(ctx context.Context, namespace, name string, req rollout.ActionRequest) (*v1alpha1.Flight, rollout.ActionOutcome, error)
	Flight(namespace, name string) (*v1alpha1.Flight, error)
	Flights(namespace string) ([]*v1alpha1.Flight, []*appsv1.Deployment, error)
	Deployment(namespace, name string) (*appsv1.Deployment, error)
}

// Engine is the Backend of a running fledge: reads from the controller's
// caches (on every replica), actions through its decision loop, image
// changes with fledge's own Deployment client, and watch events from the
// controller's Flight informer through a Broadcaster.
type Engine struct {
	ctrl   Controller
	kube   kubernetes.Interface
	events *Broadcaster
	leader atomic.Pointer[leaderState]

	mu     sync.Mutex
	images map[string]imageRecord // SetImage request ids
	order  []string
}

type leaderState struct {
	is bool
	id string
}

type imageRecord struct {
	req    ImageRequest
	change ImageChange
}

// maxImageRequests bounds the SetImage request ids remembered (in memory:
// a replay after a restart sets the same image again, which changes
// nothing).
const maxImageRequests = 1000

// NewEngine returns the engine's Backend. Wire OnFlight into the
// controller's config and SetLeader into leader election.
func NewEngine(ctrl Controller, kube kubernetes.Interface) *Engine {
	e := &Engine{ctrl: ctrl, kube: kube, events: NewBroadcaster(0), images: map[string]imageRecord{}}
	e.leader.Store(&leaderState{})
	return e
}

// OnFlight publishes a Flight change to the watchers.
func (e *Engine) OnFlight(event string, f *v1alpha1.Flight, d *appsv1.Deployment) {
	var l labels.Set
	if d != nil {
		l = labels.Set(d.Labels)
	}
	e.events.Publish(FlightEvent{Type: event, Flight: f, Labels: l})
}

// SetLeader records whether this replica leads, and who does.
func (e *Engine) SetLeader(is bool, identity string) {
	e.leader.Store(&leaderState{is: is, id: identity})
}

// Leader implements Backend.
func (e *Engine) Leader() (bool, string) {
	l := e.leader.Load()
	return l.is, l.id
}

func (e *Engine) mayAct() error {
	if is, id := e.Leader(); !is {
		return &NotLeaderError{Leader: id}
	}
	return nil
}

// List implements Backend.
func (e *Engine) List(_ context.Context, namespace string, selector labels.Selector) ([]*v1alpha1.Flight, error) {
	flights, deps, err := e.ctrl.Flights(namespace)
	if err != nil {
		return nil, err
	}
	var out []*v1alpha1.Flight
	for i, f := range flights {
		if selector != nil && !selector.Empty() && (deps[i] == nil || !selector.Matches(labels.Set(deps[i].Labels))) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// Get implements Backend.
func (e *Engine) Get(_ context.Context, namespace, name string) (*v1alpha1.Flight, error) {
	return e.ctrl.Flight(namespace, name)
}

// Subscribe implements Backend.
func (e *Engine) Subscribe(ctx context.Context, namespace, name string, selector labels.Selector) (<-chan FlightEvent, error) {
	return e.events.Subscribe(ctx, namespace, name, selector)
}

// Act implements Backend: the action goes through the Flight's next
// decision, which checks the request id, the revision and the phase
// against the persisted status.
func (e *Engine) Act(ctx context.Context, namespace, name string, req Action) (*v1alpha1.Flight, bool, error) {
	if err := e.mayAct(); err != nil {
		return nil, false, err
	}
	if f, err := e.ctrl.Flight(namespace, name); err != nil {
		return nil, false, err
	} else if r := findRequest(f, req.RequestID); r != nil && r.Kind != req.Kind {
		return nil, false, fmt.Errorf("%w: %q was a %s request", ErrRequestIDReused, req.RequestID, r.Kind)
	}
	f, out, err := e.ctrl.Act(ctx, namespace, name, rollout.ActionRequest{
		Kind: req.Kind, By: req.By, Reason: req.Reason, RequestID: req.RequestID, Revision: req.Revision,
	})
	if err != nil {
		return nil, false, err
	}
	if !out.Taken {
		switch out.Refusal {
		case rollout.ActionRevisionMismatch:
			return f, out.Replay, fmt.Errorf("%w: %s", ErrRevisionMismatch, out.Message)
		case rollout.ActionRequestIDReused:
			return f, false, fmt.Errorf("%w: %s", ErrRequestIDReused, out.Message)
		default:
			return f, out.Replay, fmt.Errorf("%w: %s", ErrNotApplicable, out.Message)
		}
	}
	return f, out.Replay, nil
}

func findRequest(f *v1alpha1.Flight, id string) *v1alpha1.RequestRecord {
	for i := range f.Status.Requests {
		if f.Status.Requests[i].ID == id {
			return &f.Status.Requests[i]
		}
	}
	return nil
}

// SetImage implements Backend. The patch carries the Deployment's
// resourceVersion, so it fails rather than overwrite a concurrent change,
// and records who and why as kubernetes.io/change-cause, which the
// Flight's start decision then quotes.
func (e *Engine) SetImage(ctx context.Context, namespace, name string, req ImageRequest) (ImageChange, error) {
	if err := e.mayAct(); err != nil {
		return ImageChange{}, err
	}
	key := namespace + "/" + name + "/" + req.RequestID
	e.mu.Lock()
	if r, ok := e.images[key]; ok {
		e.mu.Unlock()
		if r.req.Container != req.Container || r.req.Image != req.Image {
			return ImageChange{}, fmt.Errorf("%w: %q set %s=%s", ErrRequestIDReused, req.RequestID, r.req.Container, r.req.Image)
		}
		c := r.change
		c.Replayed = true
		return c, nil
	}
	e.mu.Unlock()
	d, err := e.ctrl.Deployment(namespace, name)
	if err != nil {
		return ImageChange{}, err
	}
	f, err := e.ctrl.Flight(namespace, name)
	if err != nil {
		return ImageChange{}, err // not opted in: fledge changes nothing it does not fly
	}
	if r := findRequest(f, req.RequestID); r != nil {
		// Taken before this replica's memory began (a restart).
		if r.Kind != v1alpha1.ActionSetImage {
			return ImageChange{}, fmt.Errorf("%w: %q was a %s request", ErrRequestIDReused, req.RequestID, r.Kind)
		}
		return ImageChange{Revision: e.revision(d, f), Replayed: true}, nil
	}
	field, previous := "", ""
	for _, set := range []struct {
		field string
		list  []string
	}{{"containers", names(d.Spec.Template.Spec.Containers)}, {"initContainers", names(d.Spec.Template.Spec.InitContainers)}} {
		for i, n := range set.list {
			if n == req.Container && field == "" {
				field = set.field
				if set.field == "containers" {
					previous = d.Spec.Template.Spec.Containers[i].Image
				} else {
					previous = d.Spec.Template.Spec.InitContainers[i].Image
				}
			}
		}
	}
	if field == "" {
		return ImageChange{}, fmt.Errorf("%w: deployment %s/%s has no container %q", ErrUnknownContainer, namespace, name, req.Container)
	}
	change := ImageChange{Revision: e.revision(d, f), Previous: previous}
	if previous != req.Image {
		cause := fmt.Sprintf("%s set %s=%s", req.By, req.Container, req.Image)
		if req.Reason != "" {
			cause += ": " + req.Reason
		}
		patch, _ := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": d.ResourceVersion, "annotations": map[string]string{"kubernetes.io/change-cause": cause}},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				field: []map[string]string{{"name": req.Container, "image": req.Image}},
			}}},
		})
		out, err := e.kube.AppsV1().Deployments(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return ImageChange{}, fmt.Errorf("deployment %s/%s: set image: %w", namespace, name, err)
		}
		change.Revision, change.Changed = e.revision(out, f), true
	}
	// Recorded in the Flight (who, when, why), under the request id: a
	// replay after a restart finds it there.
	reason := req.Container + "=" + req.Image
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	if change.Changed {
		if _, _, err := e.ctrl.Act(ctx, namespace, name, rollout.ActionRequest{Kind: v1alpha1.ActionSetImage, By: req.By, Reason: reason, RequestID: req.RequestID}); err != nil {
			return change, fmt.Errorf("deployment %s/%s: image set, but not recorded in the flight: %w", namespace, name, err)
		}
	}
	e.mu.Lock()
	e.images[key] = imageRecord{req: req, change: change}
	e.order = append(e.order, key)
	if len(e.order) > maxImageRequests {
		delete(e.images, e.order[0])
		e.order = e.order[1:]
	}
	e.mu.Unlock()
	return change, nil
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// revisioner is a Controller that knows a Deployment's revision with the
// config content its template reads (the engine's); without it, a
// revision is the template's hash.
type revisioner interface {
	Revision(d *appsv1.Deployment, f *v1alpha1.Flight) string
}

// revision is the revision the Flight will know Deployment d's template
// as.
func (e *Engine) revision(d *appsv1.Deployment, f *v1alpha1.Flight) string {
	if r, ok := e.ctrl.(revisioner); ok {
		return r.Revision(d, f)
	}
	return engine.TemplateHash(d.Spec.Template)
}
