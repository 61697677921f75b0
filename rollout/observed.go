package rollout

import (
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// Observed is what the controller read from the cluster for this decision.
type Observed struct {
	// DesiredRevision is the hash of the Deployment's spec.template: what
	// a person or GitOps applied.
	DesiredRevision string
	// DeploymentRevision is the hash of the template of the Deployment's
	// newest ReplicaSet: what it runs (or is rolling to).
	DeploymentRevision string
	// DeploymentSettled: the Deployment's controller has observed its spec
	// and all replicas are updated to DeploymentRevision and available.
	DeploymentSettled bool
	DeploymentPaused  bool
	// StableResumed: the Deployment reads unpaused, once taken over and
	// other than while promoted, and fledge's own last write of its
	// spec.paused (a resume; a pause the read predates) does not explain
	// it: someone else resumed it, `kubectl rollout resume`, or a manifest
	// applied with paused: false. (Who cannot be read back: an unpaused
	// Deployment has no spec.paused for managedFields to give an owner.)
	StableResumed bool
	// DeploymentMixed: a ReplicaSet of the Deployment other than its newest
	// has (or is to have) pods: a rollout between two templates is under
	// way, or was paused half-way.
	DeploymentMixed bool
	// DeploymentOffTemplate: the Deployment's status counts pods that are
	// not of its template (spec.template): a canary's template waiting
	// behind the pause, or pods of another still there after the template
	// went back to stable's.
	DeploymentOffTemplate bool
	// DeploymentCurrent: the Deployment controller has observed the
	// Deployment's latest spec (status.observedGeneration): whatever it
	// does with it is done, or under way in its ReplicaSets.
	DeploymentCurrent bool
	// ReplicaSetsBehind: the ReplicaSets read trail the Deployment read
	// (its newest is not the revision the Deployment says): what it runs
	// is not known yet, and DeploymentRevision and DeploymentMixed may be
	// out of date.
	ReplicaSetsBehind bool
	// DeploymentOneRevision: the Deployment runs one template, its own
	// (its newest ReplicaSet is of spec.template, and no other ReplicaSet
	// of it has replicas), though maybe not all of it is up yet, as when
	// it was just created. Pausing it then stops nothing half-way: its one
	// ReplicaSet still scales to its replicas.
	DeploymentOneRevision bool
	// CanaryRevision is the revision the canary Deployment runs ("" if
	// none), CanaryReplicas its desired replicas, CanaryReady whether all
	// of them are updated and available.
	CanaryRevision string
	CanaryReplicas int32
	CanaryReady    bool
	// CanaryAvailable is how many of the canary's pods run CanaryRevision
	// and are available (0 while its template is being replaced).
	CanaryAvailable int32
	// StableReplicas is the Deployment's spec.replicas: its autoscaler's
	// choice, when it has one.
	StableReplicas int32
	// Autoscaler names the HorizontalPodAutoscaler(s) whose target is the
	// Deployment ("" if none): fledge then sizes the canary by its share.
	// AutoscalerMax is their largest maxReplicas.
	Autoscaler    string
	AutoscalerMax int32
	// ForeignAutoscaler says which autoscaler targets one of fledge's own
	// Deployments (the canary's, the baseline's), whose size fledge sets;
	// empty when none does.
	ForeignAutoscaler string
	// CanaryChanged says how someone changed the canary's Deployment, which
	// is fledge's (its images are not its revision's); empty when no one
	// did. CanaryReady is false then, and CanaryAvailable 0.
	CanaryChanged string
	// CanaryTrouble is why the canary's Deployment says it cannot bring
	// its pods up (a ReplicaFailure condition, such as a quota exceeded,
	// or its progress deadline exceeded), empty when it says nothing.
	CanaryTrouble string
	// BaselineRevision, BaselineReplicas, BaselineReady and
	// BaselineTrouble are the same of the fresh baseline's Deployment
	// ("<name>-baseline", this Flight's), and BaselineExists whether
	// there is one.
	BaselineRevision string
	BaselineReplicas int32
	BaselineReady    bool
	BaselineTrouble  string
	BaselineExists   bool
	// PreviousRevision, PreviousReady, PreviousTrouble and PreviousExists
	// are the same of the previous revision's pods kept through the watch
	// after a promotion ("<name>-previous", this Flight's).
	PreviousRevision string
	PreviousReady    bool
	PreviousTrouble  string
	PreviousExists   bool
	// PreviousReplicas and PreviousAvailable are its desired and available
	// pods; BaselineAvailable the fresh baseline's available pods (as
	// CanaryAvailable).
	PreviousReplicas, PreviousAvailable, BaselineAvailable int32
	// ComparatorReady, ComparatorTrouble and ComparatorExists are the same
	// of the mirror stage's comparator ("<name>-mirror", this Flight's).
	ComparatorReady   bool
	ComparatorTrouble string
	ComparatorExists  bool
	// Weights are the split read back from the routing, valid unless
	// RoutingError is set.
	Weights      traffic.Weights
	RoutingError string
	// RoutingWriter names who else last changed the routing (a field
	// manager, how and when), when the engine can tell; "" otherwise.
	RoutingWriter string
	// RoutingWriteFailed: fledge's own last write of the weights failed
	// (a 500, a 429, a timeout), so routing that does not read as decided
	// is that write unfinished, not another writer's.
	RoutingWriteFailed bool
	// NameTaken says which object fledge would make for the canary (its
	// Deployment or Service) exists without being this Flight's: fledge
	// neither uses nor changes it, and starts no canary until the name is
	// free. Empty when none is.
	NameTaken string
	// OptedOut: the opt-in annotation is gone or the Deployment is being deleted.
	OptedOut bool
	// Reset (with OptedOut): the Flight was deleted while its Deployment
	// stays opted in. It is released all the same, but the Deployment
	// stays paused: fledge takes it over afresh at once, and unpaused,
	// Kubernetes would roll out the template a canary was judging,
	// unjudged, before the new Flight could canary it again.
	Reset bool
	// Namespace, Name and UID identify the Flight (for payloads, and
	// delivery ids unique across Flights).
	Namespace, Name, UID string
	// DesiredImages are the images of the Deployment's spec.template,
	// StableImages those of its newest ReplicaSet.
	DesiredImages, StableImages []v1alpha1.ContainerImage

	// DesiredConfig is the config content the Deployment's template reads:
	// the ConfigMaps and Secrets it names that fledge tracks, with their
	// content's hashes, sorted (DesiredRevision is WithConfig of them).
	DesiredConfig []v1alpha1.ConfigItem
	// ConfigProblem says why some of that content cannot be known now (a
	// ConfigMap that does not exist): a new revision that reads it waits.
	// ConfigNote says what the template reads that fledge does not track
	// (a Secret it may not read), for people. Neither ever holds content.
	ConfigProblem, ConfigNote string
	// MissingCopies are the kept revisions' config items (Config.Contents)
	// whose copy does not exist; LostCopies those of them whose content is
	// gone from the object (changed before it was copied), which cannot be
	// made any more.
	MissingCopies, LostCopies []v1alpha1.ConfigItem
	// StrayCopies are the names of copies this Flight owns that no kept
	// revision reads.
	StrayCopies []string
	// StalePods counts the Deployment's pods yet to run the content seen
	// last: made before Config.SeenAt, or missing from its replicas among
	// the ready ones made since (read only while they matter: a
	// promotion, a pinned stable).
	StalePods int32
}
