package webhooks

import (
	"fmt"
	"slices"
	"time"

	"github.com/fledgehq/fledge/analysis"
)

// Type is when in a rollout a hook is called, and what its answer means.
type Type string

const (
	// ConfirmRollout is called before the canary starts; the rollout holds
	// until it answers 2xx.
	ConfirmRollout Type = "confirm-rollout"
	// PreRollout is called once the canary is ready, before it gets any
	// traffic; a non-2xx answer is a failed check.
	PreRollout Type = "pre-rollout"
	// Rollout is called at every analysis of a step, before the metric
	// checks; a non-2xx answer is a failed check. Load tests are rollout
	// hooks.
	Rollout Type = "rollout"
	// ConfirmTrafficIncrease gates every weight increase: the rollout holds
	// (its checks keep running) until it answers 2xx.
	ConfirmTrafficIncrease Type = "confirm-traffic-increase"
	// ConfirmPromotion gates the promotion the same way.
	ConfirmPromotion Type = "confirm-promotion"
	// PostRollout is called after a promotion or a rollback. Its failures
	// are reported and never change the outcome.
	PostRollout Type = "post-rollout"
	// Rollback is asked at every analysis; a 2xx answer asks for the
	// canary to be rolled back.
	Rollback Type = "rollback"
	// Event is told about every transition, fire and forget.
	Event Type = "event"
)

// Types lists every hook type, in rollout order.
var Types = []Type{ConfirmRollout, PreRollout, Rollout, ConfirmTrafficIncrease, ConfirmPromotion, PostRollout, Rollback, Event}

// ParseType checks a hook type as written in a policy.
func ParseType(s string) (Type, error) {
	for _, t := range Types {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown hook type %q (want one of %v)", s, Types)
}

// Gate reports whether the rollout waits for the hook's 2xx.
func (t Type) Gate() bool {
	return t == ConfirmRollout || t == ConfirmTrafficIncrease || t == ConfirmPromotion
}

// Payload is the one JSON body every hook receives. Receivers should
// deduplicate by DeliveryID: a call interrupted by an engine restart is
// sent again with the same id.
//
// +k8s:deepcopy-gen=true
type Payload struct {
	DeliveryID string `json:"deliveryId"`
	Type       Type   `json:"type"`
	// Hook is the hook's name in the policy.
	Hook      string   `json:"hook"`
	Name      string   `json:"name"` // the Flight (and Deployment)
	Namespace string   `json:"namespace"`
	Revision  Revision `json:"revision"`
	Phase     string   `json:"phase"`
	// Step is the 0-based index of the current step, -1 before traffic.
	Step         int32  `json:"step"`
	Steps        int32  `json:"steps"`
	CanaryWeight int32  `json:"canaryWeight"`
	Cohort       string `json:"cohort,omitempty"`
	// Event names the transition, for event and post-rollout hooks
	// ("Promoted", "RolledBack", ...).
	Event   string `json:"event,omitempty"`
	Message string `json:"message,omitempty"`
	// Checks are the latest analysis results.
	Checks []analysis.Check `json:"checks,omitempty"`
	// Metadata is the hook's metadata from the policy, as written there.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Revision identifies the canaried revision.
//
// +k8s:deepcopy-gen=true
type Revision struct {
	// Hash is fledge's template hash of the revision.
	Hash string `json:"hash"`
	// Images are the revision's container images, in container order.
	Images []string `json:"images,omitempty"`
	// From are the stable revision's images, for messages such as "from
	// shop:v1 to shop:v2".
	From []string `json:"from,omitempty"`
}

// LoadResult is what a load-test hook answers (webhooks/loadtest does):
// the figures of the run, which fledge records as a check. Its own figures
// are those of the run's target (the canary); a run that also loaded
// stable, to give a comparison as much evidence on both sides, reports
// that side in Stable. Answers without it read as before.
//
// +k8s:deepcopy-gen=true
type LoadResult struct {
	LoadFigures `json:",inline"`
	// Stable are the figures of the same load sent to stable at the same
	// time, when the hook asked for it (metadata stableUrl).
	Stable *LoadFigures `json:"stable,omitempty"`
}

// LoadFigures are the figures of the requests sent to one target.
//
// +k8s:deepcopy-gen=true
type LoadFigures struct {
	Requests uint64  `json:"requests"`
	Success  float64 `json:"success"` // ratio of non-error answers, 0..1
	// Latencies in milliseconds.
	P50Ms    float64 `json:"p50Ms"`
	P95Ms    float64 `json:"p95Ms"`
	P99Ms    float64 `json:"p99Ms"`
	Duration float64 `json:"durationSeconds"`
	// Errors are the distinct errors seen, at most a few.
	Errors []string `json:"errors,omitempty"`
}

// Notification is one message for people (Slack), kept in the Flight's
// status until delivered, so that it is sent once even if fledge restarts.
// It holds facts, not formatting: webhooks/slack lays it out.
type Notification struct {
	// Event is what happened: Started, Promoted, RolledBack, Aborted, Held.
	Event     string `json:"event"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Revision  string `json:"revision,omitempty"`
	// FromImages and ToImages are the stable and canary images.
	FromImages []string `json:"fromImages,omitempty"`
	ToImages   []string `json:"toImages,omitempty"`
	// Plan is the canary weights planned (Started); the first
	// len(Cohorts) entries are cohort stages, named in Cohorts.
	Plan    []int32  `json:"plan,omitempty"`
	Cohorts []string `json:"cohorts,omitempty"`
	// Step and Weight are where the rollout stood (Step is 0-based, -1
	// before traffic).
	Step   int32 `json:"step"`
	Weight int32 `json:"weight"`
	// Reason says why, in one sentence (the failing check, who aborted
	// and through which interface, what a hold waits for).
	Reason string `json:"reason,omitempty"`
	// HoldReason is the hold's code (NotEnoughData, WaitingForGate, ...).
	HoldReason string `json:"holdReason,omitempty"`
	// By is who acted, for manual actions ("annotation", "api:alice").
	By string `json:"by,omitempty"`
	// Checks are the checks that decided (the failing ones for a rollback,
	// the last passing round for a promotion).
	Checks []analysis.Check `json:"checks,omitempty"`
	// Flags are the release flags linked to the rollout, as the event left
	// them: "new-checkout: off".
	Flags []string `json:"flags,omitempty"`
	// Duration is how long the revision's rollout took, in seconds.
	DurationSeconds int64 `json:"durationSeconds,omitempty"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	At time.Time `json:"at"`
}

// DeepCopyInto copies in into out, sharing no memory with it. It is
// written by hand because deepcopy-gen cannot copy a time.Time, which is a
// value (its *Location is immutable and safe to share).
func (in *Notification) DeepCopyInto(out *Notification) {
	*out = *in
	out.FromImages = slices.Clone(in.FromImages)
	out.ToImages = slices.Clone(in.ToImages)
	out.Plan = slices.Clone(in.Plan)
	out.Cohorts = slices.Clone(in.Cohorts)
	out.Flags = slices.Clone(in.Flags)
	if in.Checks != nil {
		out.Checks = make([]analysis.Check, len(in.Checks))
		for i := range in.Checks {
			in.Checks[i].DeepCopyInto(&out.Checks[i])
		}
	}
}

// DeepCopy returns a copy of the notification that shares no memory with it.
func (in *Notification) DeepCopy() *Notification {
	if in == nil {
		return nil
	}
	out := new(Notification)
	in.DeepCopyInto(out)
	return out
}
