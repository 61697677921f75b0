package rollout

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
)

// Action is one effect of a decision. The set is closed: the executor
// knows each kind. Every action is idempotent (absolute values, "ensure"
// semantics), so that applying a decision twice, after a crash say, does
// the same as applying it once.
type Action interface {
	fmt.Stringer
	isAction()
}

// EnsureRouting sets up the routing for the Flight's target (traffic.Router.Ensure).
type EnsureRouting struct{}

// SetWeights sets the split absolutely.
type SetWeights struct{ Weights traffic.Weights }

// WriteFlags writes a release flags ConfigMap key: Doc replaces the key's
// content if the ConfigMap is still at ResourceVersion (a
// compare-and-swap: anyone's write in between fails it, and the next
// decision reads again). Flags names the flags it changes.
type WriteFlags struct {
	ConfigMap, Key  string
	ResourceVersion string
	Doc             string
	Flags           []string
}

// EnsureCanary creates or updates the "<name>-canary" Deployment and
// Service with the Deployment's template of Revision, scaled up.
type EnsureCanary struct {
	Revision string
	// Replicas is the canary's size; 0 sizes it like stable (the
	// Deployment's replicas).
	Replicas int32
	// Config is the revision's config content: the pods read fledge's
	// copies of it (CopyName) in place of the ConfigMaps and Secrets the
	// template names.
	Config []v1alpha1.ConfigItem
}

// EnsureBaseline creates or updates the fresh baseline: the
// "<name>-baseline" Deployment, with the template of the Deployment's
// ReplicaSet of Revision (stable's) at the canary's size, and its Service.
type EnsureBaseline struct {
	Revision string
	// Replicas is as EnsureCanary's: the canary's size.
	Replicas int32
	// Config is as EnsureCanary's: stable's content.
	Config []v1alpha1.ConfigItem
}

// DeleteBaseline removes the fresh baseline's Deployment and Service.
type DeleteBaseline struct{}

// EnsurePrevious creates or updates the previous revision's pods kept
// through the watch after a promotion: the "<name>-previous" Deployment,
// with the template of the Deployment's ReplicaSet of Revision, at
// stable's size (or Replicas, if above 0), and its Service.
type EnsurePrevious struct {
	Revision string
	Replicas int32
	// Config is as EnsureCanary's: the revision's content.
	Config []v1alpha1.ConfigItem
}

// EnsureConfigCopies creates fledge's copies of the config content Items
// (owned by the Flight, immutable, named CopyName) that do not exist yet,
// each from the ConfigMap or Secret it copies if that still has the
// content (a copy of content that is gone cannot be made: observed as
// Observed.LostCopies).
type EnsureConfigCopies struct{ Items []v1alpha1.ConfigItem }

// DeleteConfigCopies deletes the Flight's copies named Names.
type DeleteConfigCopies struct{ Names []string }

// RestartStalePods evicts the Deployment's pods made before Before (so
// that they start again on the content they must serve with), those a
// PodDisruptionBudget allows now; the next looks evict the rest.
type RestartStalePods struct{ Before metav1.Time }

// DeletePrevious removes the previous revision's Deployment and Service.
type DeletePrevious struct{}

// EnsureComparator creates or updates the mirror stage's comparator: the
// "<name>-mirror" Deployment and Service, which pass each copy on to the
// canary and to stable and compare their answers.
type EnsureComparator struct{}

// DeleteComparator removes the comparator's Deployment and Service.
type DeleteComparator struct{}

// ScaleCanaryDown scales the canary Deployment to zero (it is kept, so the
// next revision starts faster and its history stays readable).
type ScaleCanaryDown struct{}

// SetStablePaused pauses or resumes the user's Deployment (spec.paused).
type SetStablePaused struct{ Paused bool }

// ReleaseRouting restores plain routing (traffic.Router.Release).
type ReleaseRouting struct{}

// DeleteCanary removes the canary Deployment and Service.
type DeleteCanary struct{}

// RecordEvent records a Kubernetes Event on the Deployment.
type RecordEvent struct {
	Warning         bool
	Reason, Message string
}

// ClearAction removes the manual action annotation once it is recorded.
type ClearAction struct{ Value v1alpha1.ActionKind }

// ForgetFlight deletes the Flight once the Deployment opted out.
type ForgetFlight struct{}

// CallHook makes a hook call, unless one with the same ID is running or
// answered already: the executor hands it to a runner in the background,
// whose answer comes back through Input.Calls.
type CallHook struct {
	ID      string
	Hook    Hook
	Secret  SecretRef
	Payload webhooks.Payload
}

// Deliver sends an outbox entry in the background, retrying with backoff
// until it is delivered or given up; the outcome comes back through
// Input.Delivered. Exactly one of Slack and Hook is set.
type Deliver struct {
	Delivery v1alpha1.Delivery
	Slack    *Slack
	Hook     *Hook
	Secret   SecretRef // signs Hook deliveries
}

func (CallHook) isAction()        {}
func (Deliver) isAction()         {}
func (a CallHook) String() string { return fmt.Sprintf("CallHook(%s %s)", a.Hook.Type, a.Hook.Name) }
func (a Deliver) String() string {
	return fmt.Sprintf("Deliver(%s %s)", a.Delivery.Channel, a.Delivery.Event)
}

func (WriteFlags) isAction()         {}
func (EnsureRouting) isAction()      {}
func (SetWeights) isAction()         {}
func (EnsureCanary) isAction()       {}
func (ScaleCanaryDown) isAction()    {}
func (EnsureBaseline) isAction()     {}
func (DeleteBaseline) isAction()     {}
func (EnsurePrevious) isAction()     {}
func (DeletePrevious) isAction()     {}
func (EnsureConfigCopies) isAction() {}
func (DeleteConfigCopies) isAction() {}
func (RestartStalePods) isAction()   {}
func (EnsureComparator) isAction()   {}
func (DeleteComparator) isAction()   {}
func (SetStablePaused) isAction()    {}
func (ReleaseRouting) isAction()     {}
func (DeleteCanary) isAction()       {}
func (RecordEvent) isAction()        {}
func (ClearAction) isAction()        {}
func (ForgetFlight) isAction()       {}

func (EnsureRouting) String() string { return "EnsureRouting" }
func (a SetWeights) String() string {
	s := fmt.Sprintf("SetWeights(stable=%d, canary=%d", a.Weights.Stable, a.Weights.Canary)
	if !a.Weights.Cohort.IsZero() {
		s += ", cohort=" + a.Weights.Cohort.Name
	}
	if !a.Weights.Sticky.IsZero() {
		s += ", sticky=" + a.Weights.Sticky.Cookie
	}
	if a.Weights.Mirror > 0 {
		s += fmt.Sprintf(", mirror=%d%%", a.Weights.Mirror)
		if a.Weights.MirrorCompared {
			s += " compared"
		}
	}
	if a.Weights.Baseline > 0 {
		s += fmt.Sprintf(", baseline=%d", a.Weights.Baseline)
	}
	return s + ")"
}
func (a WriteFlags) String() string {
	return fmt.Sprintf("WriteFlags(%s/%s: %s)", a.ConfigMap, a.Key, strings.Join(a.Flags, ", "))
}
func (a EnsureCanary) String() string {
	return "EnsureCanary(" + a.Revision + pods(a.Replicas) + configOf(a.Config) + ")"
}
func (ScaleCanaryDown) String() string { return "ScaleCanaryDown" }
func (a EnsureBaseline) String() string {
	return "EnsureBaseline(" + a.Revision + pods(a.Replicas) + configOf(a.Config) + ")"
}

// pods is ", n pods" for a size fledge chose, nothing for the engine's.
func pods(n int32) string {
	if n == 0 {
		return ""
	}
	return ", " + strconv.Itoa(int(n)) + " pods"
}
func (DeleteBaseline) String() string { return "DeleteBaseline" }
func (a EnsurePrevious) String() string {
	return "EnsurePrevious(" + a.Revision + pods(a.Replicas) + configOf(a.Config) + ")"
}
func (a EnsureConfigCopies) String() string { return "EnsureConfigCopies(" + itemNames(a.Items) + ")" }
func (a DeleteConfigCopies) String() string {
	return "DeleteConfigCopies(" + strings.Join(a.Names, ", ") + ")"
}
func (a RestartStalePods) String() string {
	return "RestartStalePods(made before " + a.Before.UTC().Format("15:04:05") + ")"
}

// configOf is ", on <copies>" for a revision that reads config content.
func configOf(items []v1alpha1.ConfigItem) string {
	if len(items) == 0 {
		return ""
	}
	return ", on " + itemNames(items)
}

func itemNames(items []v1alpha1.ConfigItem) string {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Kind + "/" + it.Name + "@" + it.Hash
	}
	return strings.Join(names, " ")
}
func (DeletePrevious) String() string    { return "DeletePrevious" }
func (EnsureComparator) String() string  { return "EnsureComparator" }
func (DeleteComparator) String() string  { return "DeleteComparator" }
func (a SetStablePaused) String() string { return fmt.Sprintf("SetStablePaused(%t)", a.Paused) }
func (ReleaseRouting) String() string    { return "ReleaseRouting" }
func (DeleteCanary) String() string      { return "DeleteCanary" }
func (a RecordEvent) String() string {
	kind := "Normal"
	if a.Warning {
		kind = "Warning"
	}
	return fmt.Sprintf("Event(%s %s: %s)", kind, a.Reason, a.Message)
}
func (a ClearAction) String() string { return "ClearAction(" + string(a.Value) + ")" }
func (ForgetFlight) String() string  { return "ForgetFlight" }
