package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/webhooks"
)

// Flight is fledge's record of one opted-in Deployment: same name, same
// namespace, owned by the Deployment. fledge writes it; people read it.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=fledge
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.progress`,description="the step of the rollout in flight (or last), as 2/4"
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.canaryWeight`,description="the canary's share of traffic, in percent"
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.status.canaryImages[0].image`,description="the canary's (first container's) image"
// +kubebuilder:printcolumn:name="Verdict",type=string,JSONPath=`.status.decisions[-1:].verdict`,description="the latest decision"
// +kubebuilder:printcolumn:name="Since",type=date,JSONPath=`.status.lastTransitionTime`,description="time since the phase or step last changed"
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.canaryRevision`,description="the revision being (or last) canaried",priority=1
// +kubebuilder:printcolumn:name="Held",type=string,JSONPath=`.status.hold.reason`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Flight struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              FlightSpec   `json:"spec"`
	Status            FlightStatus `json:"status,omitempty"`
}

// FlightSpec records what the Deployment asked for and the routing fledge
// resolved for it. The Deployment's annotations remain the source of
// truth; the routing is kept here so that it can be released even after
// the Deployment is gone.
type FlightSpec struct {
	// Deployment is the opted-in Deployment (the Flight's namesake).
	// +required
	Deployment string `json:"deployment"`
	// Policy is the policy named by its fledge.dev/rollout annotation.
	// +required
	Policy string `json:"policy"`
	// Host is the host clients call; StableService the user's Service.
	Host          string `json:"host,omitempty"`
	StableService string `json:"stableService,omitempty"`
	// VirtualService and Route name a user-owned VirtualService, if any.
	VirtualService string `json:"virtualService,omitempty"`
	Route          string `json:"route,omitempty"`
	// Overrides are the override annotations' values as last accepted:
	// while one is invalid, the rollout goes on under these.
	Overrides FlightOverrides `json:"overrides,omitzero"`
}

// FlightOverrides are the values of a Deployment's override annotations
// (fledge.dev/step-weights, max-weight and interval), as written.
type FlightOverrides struct {
	StepWeights string `json:"stepWeights,omitempty"`
	MaxWeight   string `json:"maxWeight,omitempty"`
	Interval    string `json:"interval,omitempty"`
}

// FlightList is a list of Flights.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type FlightList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Flight `json:"items"`
}

// Phase is where a Flight stands.
type Phase string

const (
	// PhaseInitializing: fledge is taking the Deployment over (pausing it,
	// setting up routing).
	PhaseInitializing Phase = "Initializing"
	// PhaseIdle: held by fledge, nothing pending, no revision promoted (yet,
	// or since the template went back to the stable revision).
	PhaseIdle Phase = "Idle"
	// PhaseProgressing: a canary is starting or stepping through weights.
	PhaseProgressing Phase = "Progressing"
	// PhasePaused: a person paused the canary at its current weight.
	PhasePaused Phase = "Paused"
	// PhasePromoting: the canary passed; the stable Deployment is being
	// updated to its template.
	PhasePromoting Phase = "Promoting"
	// PhaseSucceeded: the last revision was promoted; nothing pending.
	PhaseSucceeded Phase = "Succeeded"
	// PhaseRolledBack: the last revision was rejected by analysis or the
	// progress deadline. The Deployment keeps the rejected template in its
	// spec until someone applies another one.
	PhaseRolledBack Phase = "RolledBack"
	// PhaseAborted: a person aborted the last revision.
	PhaseAborted Phase = "Aborted"
	// PhaseRollingBack: a rollback (or abort) is decided, and all traffic
	// is being sent back to stable; the Flight is RolledBack (or Aborted)
	// once the routing reads back at 100% stable (status.rollingBack).
	PhaseRollingBack Phase = "RollingBack"
)

// Terminal reports whether no revision is in flight.
func (p Phase) Terminal() bool {
	return p == PhaseIdle || p == PhaseSucceeded || p == PhaseRolledBack || p == PhaseAborted
}

// Promotion stages, persisted so that a restart resumes the right one.
const (
	// StageUpdateStable: all traffic on the canary, the stable Deployment
	// unpaused and rolling to the canary's template.
	StageUpdateStable = "UpdateStable"
	// StageFinalize: stable runs the new revision; traffic goes back to it
	// and it is paused again. Succeeded is written only once both are
	// observed, so whoever waits for Succeeded (a pipeline about to push
	// the next image) never meets an unpaused Deployment.
	StageFinalize = "Finalize"
)

// Hold reasons: why a Flight is not moving. Cannot-measure reasons are
// never failures.
const (
	HoldNotEnoughData  = "NotEnoughData"
	HoldAnalysisError  = "AnalysisError"
	HoldInconclusive   = "Inconclusive"
	HoldCanaryNotReady = "CanaryNotReady"
	HoldPaused         = "Paused"
	HoldRouting        = "RoutingError"
	// HoldNameTaken: an object fledge would create for the canary (its
	// Deployment or Service) exists and is someone else's.
	HoldNameTaken         = "NameTaken"
	HoldDeploymentRollout = "WaitingForDeployment"
	HoldStableStalled     = "StableRolloutStalled"
	HoldGate              = "WaitingForGate"
	HoldHook              = "HookError"
	// HoldFlagGate: a flag gate evaluated to false.
	HoldFlagGate = "FlagGateClosed"
	// HoldFlagGateUnreadable: a flag gate cannot be read (provider error,
	// timeout, missing flag, not a boolean).
	HoldFlagGateUnreadable = "FlagGateUnreadable"
	// HoldFlagUnreadable: a release flag cannot be read
	// (its source is broken, the flag is missing or of the wrong type).
	HoldFlagUnreadable = "FlagUnreadable"
	// HoldFlagInUse: another Flight is stepping a linked release flag.
	HoldFlagInUse = "FlagInUse"
	// HoldFlagEdited: a person changed a release flag that fledge steps;
	// fledge does not overwrite it.
	HoldFlagEdited = "FlagEdited"
	// HoldInsufficientEvidence: the analysis deadline passed without a
	// verdict and the policy says hold: people are told, and the
	// comparisons keep looking.
	HoldInsufficientEvidence = "InsufficientEvidence"
	// HoldOtherWriter: someone else keeps changing the routing fledge
	// manages; fledge stopped setting it back, and tries again now and then.
	HoldOtherWriter = "OtherWriter"
	// HoldCanaryScaling: the canary's share waits for the pods it needs
	// (sized from stable's, with an autoscaler on the Deployment).
	HoldCanaryScaling = "CanaryScaling"
	// HoldForeignAutoscaler: an autoscaler targets one of fledge's own
	// Deployments, whose size fledge sets.
	HoldForeignAutoscaler = "ForeignAutoscaler"
	// HoldConfigMissing: a new revision reads a ConfigMap or Secret that
	// does not exist (or cannot be read): it is not canaried until it
	// does.
	HoldConfigMissing = "ConfigMissing"
	// HoldStableResumed: someone other than fledge resumed (unpaused) the
	// Deployment while a canary was in flight. fledge paused it again;
	// the hold lasts while it finds out whether Kubernetes began replacing
	// stable's pods meanwhile, and, if it did, until a person promotes or
	// aborts, the template changes, or the progress deadline rolls the
	// canary back.
	HoldStableResumed = "StableResumed"
)

// CohortStage is a cohort stage as planned for a revision.
type CohortStage struct {
	Name   string `json:"name"`
	Header string `json:"header"`
	Exact  string `json:"exact,omitempty"`
	Regex  string `json:"regex,omitempty"`
	// Attribute and Value select the cohort in release flags.
	Attribute   string          `json:"attribute,omitempty"`
	Value       string          `json:"value,omitempty"`
	MinDuration metav1.Duration `json:"minDuration,omitempty"`
	MinSamples  int64           `json:"minSamples,omitempty"`
	// Mirror, when set, makes this the mirror stage: no audience reaches
	// the canary; this percentage of the requests is copied to it instead,
	// and users get stable's answers only. (Header and the values are
	// then empty.)
	Mirror int32 `json:"mirror,omitempty"`
	// Compared, on the mirror stage, sends the copies through fledge's
	// comparator ("<name>-mirror"), which compares the canary's answer to
	// each with stable's; the share that differ is judged.
	Compared bool `json:"compared,omitempty"`
	// Host, when set, makes this a blue/green preview reached by a host of
	// its own rather than a match route: the Service of that name, which
	// fledge creates beside the canary's, reaches the new revision alone.
	// (Header and the values are then empty.)
	Host string `json:"host,omitempty"`
}

// BlueGreenPlan is what a blue/green revision does after the switch.
type BlueGreenPlan struct {
	// PostPromotion is how long the new revision serves everyone, judged,
	// before the Deployment is rolled to it; a failure meanwhile switches
	// every request back to the previous revision at once.
	PostPromotion metav1.Duration `json:"postPromotion"`
	// ScaleDownDelay is how long after the switch the previous revision is
	// kept at full size, at least (never less than PostPromotion).
	ScaleDownDelay metav1.Duration `json:"scaleDownDelay"`
}

// StickyCookie is a revision's sticky cookie (its value is the revision).
type StickyCookie struct {
	Cookie string `json:"cookie"`
	MaxAge int32  `json:"maxAge"`
}

// FlagState is where a linked release flag stands.
type FlagState string

const (
	// FlagInSync: the ConfigMap serves the flag as the stage wants.
	FlagInSync FlagState = "InSync"
	// FlagWriting: fledge is writing the stage's targeting.
	FlagWriting FlagState = "Writing"
	// FlagEdited: someone else changed the flag since fledge last set it.
	FlagEdited FlagState = "Edited"
	// FlagUnreadable: the ConfigMap, its key or the flag is missing or
	// invalid; nothing is written.
	FlagUnreadable FlagState = "Unreadable"
	// FlagLeftAlone: the flag was already at its final variant when the
	// revision started (released by an earlier rollout): not stepped.
	FlagLeftAlone FlagState = "LeftAlone"
	// FlagInUse: another Flight is stepping the flag; this one waits.
	FlagInUse FlagState = "InUse"
)

// FlagStatus is a linked release flag, fixed when the revision started,
// with what fledge wants it to serve and what it found.
type FlagStatus struct {
	ConfigMap string `json:"configMap"`
	Key       string `json:"key"`
	Flag      string `json:"flag"`
	On        string `json:"on"`
	Off       string `json:"off"`
	BucketBy  string `json:"bucketBy"`
	Final     string `json:"final"`
	// Serving says what the stage wants the flag to serve, for people.
	Serving string    `json:"serving,omitempty"`
	State   FlagState `json:"state,omitempty"`
	// Applied is the hash of the flag's definition last seen as fledge
	// left it; Pending that of the definition being written. Any other
	// definition is someone else's edit.
	Applied string `json:"applied,omitempty"`
	Pending string `json:"pending,omitempty"`
	// WritingSince is when fledge began writing Pending.
	WritingSince *metav1.Time `json:"writingSince,omitempty"`
	Message      string       `json:"message,omitempty"`
}

// FlightStatus is the persisted state of a rollout: Decide's state
// machine, plus a bounded decision log for people.
type FlightStatus struct {
	Phase Phase `json:"phase,omitempty"`
	// StableRevision is the revision the user's Deployment runs: its
	// template's hash, and its config content's ("<template>-<config>")
	// when its pods read ConfigMaps or Secrets fledge tracks.
	StableRevision string `json:"stableRevision,omitempty"`
	// CanaryRevision is the template hash being (or last) canaried.
	CanaryRevision string `json:"canaryRevision,omitempty"`
	// RejectedRevision was rolled back or aborted; it is not canaried again
	// until the Deployment's template changes (or a person retries it).
	RejectedRevision string `json:"rejectedRevision,omitempty"`
	// Steps are the canary weights planned for this revision, fixed when
	// it started so a policy reload never renumbers a rollout in flight.
	Steps []int32 `json:"steps,omitempty"`
	// Cohorts are this revision's cohort stages, fixed when it started:
	// the first len(Cohorts) entries of Steps (weight 0) are theirs.
	Cohorts []CohortStage `json:"cohorts,omitempty"`
	// Sticky is the revision's sticky cookie, if its policy keeps users on
	// the canary during the weighted steps.
	Sticky *StickyCookie `json:"sticky,omitempty"`
	// BlueGreen is set when this revision is rolled out blue/green, fixed
	// when it started: its steps are the preview (step 0, weight 0: its
	// one cohort, the preview route, reaches the new revision) and the
	// switch (step 1, weight 100: everyone on the new revision while the
	// previous one is kept at full size).
	BlueGreen *BlueGreenPlan `json:"blueGreen,omitempty"`
	// Baseline is "fresh" when this revision's comparisons judge it
	// against a fresh baseline ("<name>-baseline": stable's template at
	// the canary's size, given the same share of traffic), fixed when it
	// started; empty when against stable.
	Baseline string `json:"baseline,omitempty"`
	// Step indexes Steps; -1 while the canary starts (no traffic yet).
	Step int32 `json:"step"`
	// CanaryWeight is the canary's intended share of traffic, in percent.
	CanaryWeight int32 `json:"canaryWeight"`
	// CanaryWithdrawn: the step's share is on stable for now, because no
	// pod of the canary (or of its fresh baseline) was ready to serve it
	// (its users would get 503s: no healthy upstream). CanaryWeight is
	// the step's share, given back once a pod is ready, the step's
	// interval then starting over.
	CanaryWithdrawn bool `json:"canaryWithdrawn,omitempty"`
	// PromotionStage is the step of a promotion in progress.
	PromotionStage string `json:"promotionStage,omitempty"`
	// FailedChecks counts failed analyses of this revision.
	FailedChecks int32 `json:"failedChecks"`
	// StableImages and CanaryImages are the container images of the two
	// revisions, for people and messages.
	StableImages []ContainerImage `json:"stableImages,omitempty"`
	CanaryImages []ContainerImage `json:"canaryImages,omitempty"`
	// Config tracks the ConfigMaps and Secrets the Deployment's pods read
	// (nil while they read none fledge tracks): a revision is the
	// template and that content.
	Config *ConfigStatus `json:"config,omitempty"`
	// Round counts the analysis rounds of this revision: the hook calls
	// of a round are keyed by it, so each is made once.
	Round int32 `json:"round,omitempty"`
	// GateRound counts how often closed gates were asked again.
	GateRound int32 `json:"gateRound,omitempty"`
	// StepPassed: the current step passed its analysis and waits for a
	// gate (confirm-traffic-increase or confirm-promotion) to open.
	StepPassed bool `json:"stepPassed,omitempty"`
	// Calls are this revision's hook calls, oldest first, at most
	// MaxCalls. A call is recorded Pending before it is made, so that
	// after a restart it is made again under the same delivery id (which
	// receivers deduplicate) instead of a new one.
	Calls []CallRecord `json:"calls,omitempty"`
	// Outbox holds the notifications and fire-and-forget hooks not yet
	// delivered, and the last few delivered. Written before anything is
	// sent, it makes every message go out once, in order, whatever
	// restarts happen (short of one between a send and its record).
	Outbox []Delivery `json:"outbox,omitempty"`
	// DeliverySeq numbers outbox entries.
	DeliverySeq int64 `json:"deliverySeq,omitempty"`
	// Flags are the release flags linked to this revision, and where each
	// stands.
	Flags []FlagStatus `json:"flags,omitempty"`

	RevisionStartedAt *metav1.Time `json:"revisionStartedAt,omitempty"`
	StepStartedAt     *metav1.Time `json:"stepStartedAt,omitempty"`
	LastAnalysisAt    *metav1.Time `json:"lastAnalysisAt,omitempty"`
	// CanaryTrafficEndedAt is when a canary last stopped serving (its
	// revision promoted, rolled back or replaced): its last requests may
	// reach Prometheus's counters of the canary workload, which the next
	// revision shares, until a scrape later.
	CanaryTrafficEndedAt *metav1.Time `json:"canaryTrafficEndedAt,omitempty"`
	// LastLookAt is when the comparisons last read both sides' counters.
	LastLookAt *metav1.Time `json:"lastLookAt,omitempty"`
	// Evidence is what each comparison with stable knows of this
	// revision, one entry per comparison metric.
	Evidence []Evidence `json:"evidence,omitempty"`
	// Watch is the watch after a promotion (the policy's postPromotion),
	// from the promotion's start until it passes or is superseded, or, if
	// it found a regression, until the Deployment's template changes.
	Watch          *Watch       `json:"watch,omitempty"`
	StageStartedAt *metav1.Time `json:"stageStartedAt,omitempty"`

	// Reasserts counts the times this step's weights were set back after
	// the routing read otherwise (another writer), until they stay set for
	// a whole interval.
	Reasserts int32 `json:"reasserts,omitempty"`

	// RollingBack is the rollback being carried out, while the phase is
	// RollingBack.
	RollingBack *RollingBack `json:"rollingBack,omitempty"`

	// Hold says why the Flight is not moving, if it is not.
	Hold *Hold `json:"hold,omitempty"`
	// Message sums up the last transition for people.
	Message string `json:"message,omitempty"`
	// LastAction is the last manual action taken.
	LastAction *ActionRecord `json:"lastAction,omitempty"`
	// Requests are the latest API requests, by request id, at most
	// MaxRequests: a request retried with the same id gets the first
	// answer instead of acting twice.
	Requests []RequestRecord `json:"requests,omitempty"`
	// Progress is the step for people (kubectl get flights): "2/4" is the
	// second of four steps, "0/4" before the canary's traffic; "" when no
	// revision was ever canaried.
	Progress string `json:"progress,omitempty"`
	// LastTransitionTime is when the phase or the step last changed.
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	// Decisions is the decision log, oldest first, at most MaxDecisions.
	Decisions  []DecisionRecord   `json:"decisions,omitempty"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Evidence is what one comparison knows of the revision in flight: both
// sides' counts since the canary's traffic began, the e-process that says
// how strongly the canary is worse, and the counters as last read, from
// which the next look counts.
type Evidence struct {
	Metric string `json:"metric"`
	// Last are both sides' cumulative counters at the last look.
	Last analysis.Reading `json:"last"`
	// Canary and Stable are what each side served since the first look.
	Canary sequential.Counts `json:"canary"`
	Stable sequential.Counts `json:"stable"`
	// Worse is the evidence that the canary's rate is higher than stable's.
	Worse sequential.Worse `json:"worse"`
	// NoWorse is the evidence that it is no worse than its margin.
	NoWorse sequential.Promotion `json:"noWorse,omitempty"`
	// Looks counts the looks taken into evidence.
	Looks int32 `json:"looks"`
	// Since is when the first look read the counters: Canary and Stable
	// are what the sides served between it and the last look (LastLookAt),
	// the rate that spaces a quiet canary's looks. Absent in evidence
	// written before fledge kept it: its looks keep their pace.
	Since *metav1.Time `json:"since,omitempty"`
}

// RollingBack is a rollback or abort decided and not yet done: what it
// ends in, once the routing reads back at 100% stable, and what to tell
// then.
type RollingBack struct {
	// Phase is RolledBack or Aborted.
	Phase  Phase  `json:"phase"`
	Reason string `json:"reason"`
	// By is who aborted (empty for analysis).
	By string `json:"by,omitempty"`
	// Revision is the canary's; Step and Weight are where it stood.
	Revision string      `json:"revision"`
	Step     int32       `json:"step"`
	Weight   int32       `json:"weight"`
	Since    metav1.Time `json:"since"`
}

// Hold is a reason for not moving, with when it began.
type Hold struct {
	Reason  string      `json:"reason"`
	Message string      `json:"message"`
	Since   metav1.Time `json:"since"`
}

// ActionRecord is a manual action as recorded in the Flight.
type ActionRecord struct {
	Kind   ActionKind  `json:"kind"`
	By     string      `json:"by"`
	Reason string      `json:"reason,omitempty"`
	At     metav1.Time `json:"at"`
	// Cleared is set once its annotation is seen removed, so that the same
	// annotation is taken once even if fledge restarts in between, while a
	// new one (after removal) is a new action.
	Cleared bool `json:"cleared"`
	// RequestID and Revision are an API request's.
	RequestID string `json:"requestID,omitempty"`
	Revision  string `json:"revision,omitempty"`
}

// RequestRecord is an API request as answered.
type RequestRecord struct {
	ID      string      `json:"id"`
	Kind    ActionKind  `json:"kind"`
	By      string      `json:"by"`
	At      metav1.Time `json:"at"`
	Taken   bool        `json:"taken"`
	Refusal string      `json:"refusal,omitempty"`
	Message string      `json:"message,omitempty"`
}

// DecisionRecord is one entry of the decision log.
type DecisionRecord struct {
	At       metav1.Time      `json:"at"`
	Revision string           `json:"revision,omitempty"`
	Step     int32            `json:"step"`
	Weight   int32            `json:"weight"`
	Verdict  Verdict          `json:"verdict"`
	Message  string           `json:"message"`
	Checks   []analysis.Check `json:"checks,omitempty"`
	// Flags are the linked release flags as the decision left them:
	// "new-checkout: on for 20% of users".
	Flags []string `json:"flags,omitempty"`
	// Repeats counts the rounds after the first that held the same way
	// (same step, same checks reaching the same outcomes): the log keeps
	// one record of such a hold, the latest, and Since is when the first
	// was.
	Repeats int32        `json:"repeats,omitempty"`
	Since   *metav1.Time `json:"since,omitempty"`
}

// ContainerImage is one container's image in a revision's pod template.
type ContainerImage struct {
	Container string `json:"container"`
	Image     string `json:"image"`
	Init      bool   `json:"init,omitempty"`
}

// CallState is where a hook call stands.
type CallState string

const (
	CallPending  CallState = "Pending"  // asked for, no answer recorded yet
	CallOK       CallState = "OK"       // answered 2xx
	CallRejected CallState = "Rejected" // answered non-2xx
	CallError    CallState = "Error"    // no usable answer
)

// CallRecord is one hook call of the current revision.
type CallRecord struct {
	ID       string               `json:"id"`
	Hook     string               `json:"hook"`
	Type     webhooks.Type        `json:"type"`
	Step     int32                `json:"step"`
	Round    int32                `json:"round"`
	State    CallState            `json:"state"`
	Status   int                  `json:"status,omitempty"`
	Message  string               `json:"message,omitempty"`
	Load     *webhooks.LoadResult `json:"load,omitempty"`
	Attempts int                  `json:"attempts,omitempty"`
	Started  metav1.Time          `json:"started"`
	Done     *metav1.Time         `json:"done,omitempty"`
}

// DeliveryState is where an outbox entry stands.
type DeliveryState string

const (
	DeliveryPending   DeliveryState = "Pending"
	DeliveryDelivered DeliveryState = "Delivered"
	DeliveryFailed    DeliveryState = "Failed" // gave up, or not deliverable
)

// Delivery is one outbox entry: a Slack message or a hook told of a
// transition.
type Delivery struct {
	ID string `json:"id"`
	// Channel is "slack" or "hook:<name>".
	Channel      string                 `json:"channel"`
	Event        string                 `json:"event"`
	Notification *webhooks.Notification `json:"notification,omitempty"`
	Payload      *webhooks.Payload      `json:"payload,omitempty"`
	State        DeliveryState          `json:"state"`
	Attempts     int                    `json:"attempts,omitempty"`
	Message      string                 `json:"message,omitempty"`
	Created      metav1.Time            `json:"created"`
	Done         *metav1.Time           `json:"done,omitempty"`
}

// Verdict is what a decision did.
type Verdict string

const (
	VerdictStart    Verdict = "start"    // a canary started for a new revision
	VerdictRestart  Verdict = "restart"  // a newer revision replaced the canary
	VerdictAdvance  Verdict = "advance"  // checks passed: next step
	VerdictHold     Verdict = "hold"     // cannot measure (or inconclusive): stay
	VerdictFail     Verdict = "fail"     // a check failed, below the failure limit
	VerdictPromote  Verdict = "promote"  // all steps passed: promotion started
	VerdictPromoted Verdict = "promoted" // the stable Deployment runs the new revision
	VerdictRollback Verdict = "rollback" // rejected: traffic back to stable
	VerdictAbort    Verdict = "abort"    // a person aborted
	VerdictManual   Verdict = "manual"   // another manual action
	VerdictRevert   Verdict = "revert"   // the template went back to stable
)

// ActionKind is a manual action, from the annotation or (later) the API.
type ActionKind string

const (
	ActionPromote     ActionKind = "promote"      // pass the current step
	ActionPromoteFull ActionKind = "promote-full" // skip the remaining steps
	ActionAbort       ActionKind = "abort"        // roll back now
	ActionPause       ActionKind = "pause"        // hold at the current weight
	ActionResume      ActionKind = "resume"
	ActionRetry       ActionKind = "retry" // canary a rolled-back revision again
	// ActionSetImage records an image set through the API (the change
	// itself is the Deployment's): who, when and why, in the Flight.
	// It is never read from the annotation.
	ActionSetImage ActionKind = "set-image"
)
