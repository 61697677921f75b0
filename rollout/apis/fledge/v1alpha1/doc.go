// Package v1alpha1 is the Flight API, group fledge.dev, version v1alpha1:
// the Go types of the flights.fledge.dev custom resource, the persisted
// state of one rollout plus its bounded decision log.
//
// These types are the source of truth for everything generated from
// them (make generate): their deepcopy functions (zz_generated.deepcopy.go),
// the typed clientset, listers and informers under rollout/client, and the
// CRD manifest in deploy/crds. The values they hold are decided by the
// decision core (package rollout); this package holds data and no
// behaviour beyond what a value says of itself.
//
// +k8s:deepcopy-gen=package
// +groupName=fledge.dev
// +kubebuilder:validation:Optional
package v1alpha1
