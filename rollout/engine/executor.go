package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/fledgehq/fledge/flags/flagd"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeclient "github.com/fledgehq/fledge/rollout/client/clientset/versioned/typed/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// statusEqual is Kubernetes' semantic equality, taught that check times
// (time.Time, whose fields are unexported) are equal when they are the
// same instant.
var statusEqual = func() conversion.Equalities {
	e := equality.Semantic.Copy()
	if err := e.AddFunc(func(a, b time.Time) bool { return a.Equal(b) }); err != nil {
		panic(err)
	}
	return e
}()

// Executor applies decisions. It is deliberately thin: every choice was
// made by Decide; the executor only knows how to perform each action.
type Executor struct {
	Kube     kubernetes.Interface
	Flights  fledgeclient.FlightsGetter
	Router   traffic.Router
	Recorder record.EventRecorder
	// Runner makes hook calls and deliveries in the background.
	Runner *Runner
	// Counter, if set, is told about every API write (for the benchmark
	// of writes per step).
	Counter func(kind string)
	// Fence, if set, is asked before every write: an error (this replica
	// may no longer hold the leader Lease) stops the decision unwritten.
	Fence func() error
	// Cached, if set, is where the canary's objects are read first (see
	// CachedReads); without it every read is live.
	Cached *CachedReads
	// ComparatorImage runs the response comparator of mirror stages that
	// compare responses (fledge-loadtester's mirror-compare mode).
	ComparatorImage string
	// PodsOf lists the pods of a Deployment's own ReplicaSets (for
	// RestartStalePods); nil: none are restarted.
	PodsOf func(context.Context, *appsv1.Deployment) ([]corev1.Pod, error)

	// own are this replica's last writes of each Flight; pauses its last
	// write of each Deployment's spec.paused.
	own    ownWrites
	pauses ownPauses
}

// Subject is what a decision is applied to.
type Subject struct {
	Flight     *v1alpha1.Flight   // as read (its resourceVersion fences the status write)
	Deployment *appsv1.Deployment // nil once deleted
	Stable     *corev1.Service    // the stable Service (for the canary's ports), nil if unknown
	Target     traffic.Target
	// StableDirect: the policy's load tests load stable directly, so a
	// canary comes with the Service "<name>-stable" (StableService).
	StableDirect bool
	// PreviewHost is the Service that reaches a blue/green preview by a
	// host of its own, made with the canary's ("" if none).
	PreviewHost string
	// StalePreviewHost is a preview host an earlier plan made and this
	// decision's no longer has: removed when the canary is ensured.
	StalePreviewHost string
}

// Apply writes the decision's status, then applies its actions in order.
//
// The status write is the commit point. It carries the Flight's
// resourceVersion, so if another replica (or this one, from a stale
// cache) wrote in between, it fails with a conflict and nothing is
// applied. Once it succeeds, the actions follow; if one fails the rest
// are skipped and the next decision re-derives them from the status.
// A decision that changes no status has no write to fail: its actions
// are fenced by a read instead (current).
// It returns the Flight as written.
func (x *Executor) Apply(ctx context.Context, s Subject, d rollout.Decision) (*v1alpha1.Flight, error) {
	f := s.Flight
	if err := x.fenced(); err != nil {
		return nil, fmt.Errorf("flight %s/%s: %w", f.Namespace, f.Name, err)
	}
	if !statusEqual.DeepEqual(f.Status, d.Status) {
		patch, err := statusPatch(f, d.Status)
		if err != nil {
			return nil, fmt.Errorf("flight %s/%s: write status: %w", f.Namespace, f.Name, err)
		}
		x.count("flight-status")
		out, err := x.Flights.Flights(f.Namespace).Patch(ctx, f.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil {
			if apierrors.IsNotFound(err) {
				x.own.forget(f.Namespace + "/" + f.Name)
			}
			return nil, fmt.Errorf("flight %s/%s: write status: %w", f.Namespace, f.Name, err)
		}
		x.own.wrote(out, time.Time{})
		f = out
	} else if err := x.current(ctx, f, d.Actions); err != nil {
		return nil, fmt.Errorf("flight %s/%s: %w", f.Namespace, f.Name, err)
	}
	for _, a := range d.Actions {
		if err := x.fenced(); err != nil {
			return f, fmt.Errorf("flight %s/%s: %s: %w", s.Target.Namespace, s.Target.Name, a, err)
		}
		if err := x.apply(ctx, s, a); err != nil {
			return f, fmt.Errorf("flight %s/%s: %s: %w", s.Target.Namespace, s.Target.Name, a, err)
		}
	}
	return f, nil
}

// current stands in for the status write's resourceVersion check when a
// decision changes no status but has actions that change the world: it
// reads the Flight from the API server and, if it changed since the read
// the decision was made from, refuses them with a conflict (the next
// look decides again). Without it a look from a cache that has not seen
// this fledge's own last status write yet would apply what the older
// status asked for, with no write to fail: a Flight read at UpdateStable
// and stored at Finalize would send all traffic back to the canary and
// unpause stable, which then rolls out un-canaried any template pushed
// meanwhile (faults_test.go). Hook calls and deliveries (idempotent by
// id, their answers go through the status), Events and EnsureRouting
// (which changes no weights) need no such read.
func (x *Executor) current(ctx context.Context, f *v1alpha1.Flight, actions []rollout.Action) error {
	if f.ResourceVersion == "" || !slices.ContainsFunc(actions, changesTheWorld) || x.own.isLast(f) {
		// (The Flight as this replica last wrote it: nothing wrote it
		// since, or its resourceVersion would differ.)
		return nil
	}
	cur, err := x.Flights.Flights(f.Namespace).Get(ctx, f.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil // gone: nothing stored to contradict (an opt-out's release goes on)
	case err != nil:
		return fmt.Errorf("read before acting: %w", err)
	case cur.ResourceVersion != f.ResourceVersion:
		return apierrors.NewConflict(v1alpha1.FlightResource.GroupResource(), f.Name,
			fmt.Errorf("changed since it was read (resourceVersion %s, now %s): nothing applied, deciding again", f.ResourceVersion, cur.ResourceVersion))
	}
	return nil
}

func changesTheWorld(a rollout.Action) bool {
	switch a.(type) {
	case rollout.CallHook, rollout.Deliver, rollout.RecordEvent, rollout.EnsureRouting:
		return false
	}
	return true
}

// fenced is Fence's answer, as an error that says nothing was written.
func (x *Executor) fenced() error {
	if x.Fence == nil {
		return nil
	}
	if err := x.Fence(); err != nil {
		return fmt.Errorf("not written: %w", err)
	}
	return nil
}

// statusPatch is the JSON merge patch from f's status to next, conditioned
// on f's resourceVersion (a patch carrying one fails with a conflict if
// the Flight changed since, as an update would). A patch names only the
// fields this binary changes: a status field it does not know (written by
// a newer fledge, during a rolling upgrade) is left as it is, where a
// whole-status update would erase it. (Lists are replaced whole, as merge
// patches do: an unknown field inside a changed list's items is not kept.)
func statusPatch(f *v1alpha1.Flight, next v1alpha1.FlightStatus) ([]byte, error) {
	before, err := json.Marshal(f.Status)
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	status, err := jsonpatch.CreateMergePatch(before, after)
	if err != nil {
		return nil, err
	}
	patch := map[string]json.RawMessage{"status": status}
	if f.ResourceVersion != "" {
		patch["metadata"] = json.RawMessage(fmt.Sprintf(`{"resourceVersion":%q}`, f.ResourceVersion))
	}
	return json.Marshal(patch)
}

func (x *Executor) apply(ctx context.Context, s Subject, a rollout.Action) error {
	ns, name := s.Target.Namespace, s.Target.Name
	// The router re-reads and writes again after a conflict: each of its
	// writes asks the fence too, so that a leader paused mid-call (past
	// its Lease, replaced) does not write over its successor on the retry.
	ctx = traffic.WithFence(ctx, x.fenced)
	switch a := a.(type) {
	case rollout.EnsureRouting:
		x.count("routing-call")
		return x.Router.Ensure(ctx, s.Target)
	case rollout.SetWeights:
		x.count("routing-call")
		return x.Router.SetWeights(ctx, s.Target, a.Weights)
	case rollout.ReleaseRouting:
		x.count("routing-call")
		return x.Router.Release(ctx, s.Target)
	case rollout.EnsureCanary:
		return x.ensureCanary(ctx, s, a.Revision, a.Replicas, a.Config)
	case rollout.ScaleCanaryDown:
		return x.scaleCanaryDown(ctx, s)
	case rollout.EnsureBaseline:
		return x.ensureBaseline(ctx, s, a.Revision, a.Replicas, a.Config)
	case rollout.EnsurePrevious:
		return x.ensurePrevious(ctx, s, a.Revision, a.Replicas, a.Config)
	case rollout.EnsureConfigCopies:
		return x.ensureConfigCopies(ctx, s, a.Items)
	case rollout.DeleteConfigCopies:
		return x.deleteConfigCopies(ctx, s, a.Names)
	case rollout.RestartStalePods:
		return x.restartStalePods(ctx, s, a.Before)
	case rollout.DeletePrevious:
		return x.deletePrevious(ctx, s)
	case rollout.DeleteBaseline:
		return x.deleteBaseline(ctx, s)
	case rollout.EnsureComparator:
		return x.ensureComparator(ctx, s)
	case rollout.DeleteComparator:
		return x.deleteComparator(ctx, s)
	case rollout.DeleteCanary:
		if err := x.deleteOwned(ctx, s, "deployment", name+CanarySuffix); err != nil {
			return err
		}
		if err := x.deleteOwned(ctx, s, "service", name+CanarySuffix); err != nil {
			return err
		}
		// A fresh baseline goes with the canary, whether or not the
		// policy still asks for one, and so does a preview's host.
		if err := x.deleteBaseline(ctx, s); err != nil {
			return err
		}
		if err := x.deleteComparator(ctx, s); err != nil {
			return err
		}
		if err := x.deletePrevious(ctx, s); err != nil {
			return err
		}
		if s.PreviewHost != "" {
			if err := x.deleteOwned(ctx, s, "service", s.PreviewHost); err != nil {
				return err
			}
		}
		// Whether or not the policy still needs it: it goes with the
		// canary, and a policy changed meanwhile must not leave it behind.
		return x.deleteStableService(ctx, s)
	case rollout.SetStablePaused:
		if s.Deployment == nil {
			return nil
		}
		x.count("deployment")
		patch := fmt.Sprintf(`{"spec":{"paused":%t}}`, a.Paused)
		// As fledge's field manager, whatever the binary is called.
		out, err := x.Kube.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: traffic.FieldManager})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			x.pauses.wrote(out)
		}
		return err
	case rollout.ClearAction:
		if s.Deployment == nil {
			return nil
		}
		x.count("deployment")
		return x.clearAction(ctx, s.Deployment, a.Value)
	case rollout.RecordEvent:
		var obj runtime.Object = s.Flight
		if s.Deployment != nil {
			obj = s.Deployment
		}
		kind := corev1.EventTypeNormal
		if a.Warning {
			kind = corev1.EventTypeWarning
		}
		x.Recorder.Event(obj, kind, a.Reason, a.Message)
		return nil
	case rollout.WriteFlags:
		x.count("flags")
		return x.writeFlags(ctx, ns, a)
	case rollout.CallHook:
		x.Runner.StartCall(ns+"/"+name, a)
		return nil
	case rollout.Deliver:
		x.Runner.StartDelivery(ns+"/"+name, a)
		return nil
	case rollout.ForgetFlight:
		x.count("flight")
		err := x.Flights.Flights(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	default:
		return fmt.Errorf("unknown action %T", a)
	}
}

// ownedBy reports whether fledge made obj for Flight f: its label, and a
// controller reference to f.
func ownedBy(obj metav1.Object, f *v1alpha1.Flight) bool {
	return f != nil && obj.GetLabels()[LabelManagedBy] == managedBy && metav1.IsControlledBy(obj, f)
}

// ownedByRef is ownedBy for the Flight owner refers to (nil: none, and
// nothing is its).
func ownedByRef(obj metav1.Object, owner *metav1.OwnerReference) bool {
	if owner == nil || obj.GetLabels()[LabelManagedBy] != managedBy {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == owner.UID
}

// notOurs says why fledge leaves obj alone.
func notOurs(kind string, obj metav1.Object) string {
	return fmt.Sprintf("%s %s/%s exists and is not fledge's (no %s=%s label with a controller reference to Flight %s)",
		kind, obj.GetNamespace(), obj.GetName(), LabelManagedBy, managedBy, strings.TrimSuffix(obj.GetName(), CanarySuffix))
}

// mergePorts keeps what the API server defaulted on existing ports.
func mergePorts(cur, want []corev1.ServicePort) []corev1.ServicePort {
	out := make([]corev1.ServicePort, len(want))
	for i, w := range want {
		out[i] = w
		for _, c := range cur {
			if c.Port == w.Port && c.Name == w.Name {
				out[i].Protocol, out[i].TargetPort, out[i].NodePort = c.Protocol, c.TargetPort, c.NodePort
			}
		}
	}
	return out
}

// clearAction removes the action annotation if it still holds the value
// taken, so a new request written meanwhile is not lost.
func (x *Executor) clearAction(ctx context.Context, d *appsv1.Deployment, value v1alpha1.ActionKind) error {
	patch, _ := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/annotations/" + jsonPointerEscape(rollout.AnnotationAction), "value": string(value)},
		{"op": "remove", "path": "/metadata/annotations/" + jsonPointerEscape(rollout.AnnotationAction)},
	})
	_, err := x.Kube.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
		return nil // gone, or already changed: the next decision sees it
	}
	return err
}

// jsonPointerEscape escapes a key for a JSON patch path (RFC 6901).
var jsonPointerEscape = strings.NewReplacer("~", "~0", "/", "~1").Replace

func (x *Executor) count(kind string) {
	if x.Counter != nil {
		x.Counter(kind)
	}
}

// writeFlags replaces a release flags ConfigMap key, if the ConfigMap is
// still at the resourceVersion the decision read: the update carries it,
// so the API server refuses it if anyone wrote in between, and the next
// decision reads again and tells fledge's writes from a person's edits.
// A document flagd would refuse is never written.
func (x *Executor) writeFlags(ctx context.Context, ns string, a rollout.WriteFlags) error {
	if err := flagd.Validate([]byte(a.Doc)); err != nil {
		return fmt.Errorf("configmap %s/%s: data.%s: refusing to write: %w", ns, a.ConfigMap, a.Key, err)
	}
	cms := x.Kube.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, a.ConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", ns, a.ConfigMap, err)
	}
	next := cm.DeepCopy()
	next.ResourceVersion = a.ResourceVersion
	if next.Data == nil {
		next.Data = map[string]string{}
	}
	next.Data[a.Key] = a.Doc
	if _, err := cms.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("configmap %s/%s: changed since it was read; deciding again: %w", ns, a.ConfigMap, err)
		}
		return fmt.Errorf("configmap %s/%s: update: %w", ns, a.ConfigMap, err)
	}
	return nil
}
