package v1alpha1

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// FlightResource is the Flight custom resource (deploy/crds).
var FlightResource = schema.GroupVersionResource{Group: "fledge.dev", Version: "v1alpha1", Resource: "flights"}

// Flight is fledge's record of one opted-in Deployment: same name, same
// namespace, owned by the Deployment. fledge writes it; people read it.
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
	Deployment string `json:"deployment"`
	// Policy is the policy named by its fledge.dev/rollout annotation.
	Policy string `json:"policy"`
	// Host is the host clients call; StableService the user's Service.
	Host          string `json:"host,omitempty"`
	StableService string `json:"stableService,omitempty"`
	// VirtualService and Route name a user-owned VirtualService, if any.
	VirtualService string `json:"virtualService,omitempty"`
	Route          string `json:"route,omitempty"`
}

// ToUnstructured converts a Flight for the dynamic client.
func (f *Flight) ToUnstructured() (*unstructured.Unstructured, error) {
	f.APIVersion = FlightResource.GroupVersion().String()
	f.Kind = "Flight"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(f)
	if err != nil {
		return nil, fmt.Errorf("flight %s/%s: %w", f.Namespace, f.Name, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// FlightFrom converts an object read through the dynamic client (or its
// informer: the result shares nothing with it, so it may be changed).
func FlightFrom(u *unstructured.Unstructured) (*Flight, error) {
	var f Flight
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &f); err != nil {
		return nil, fmt.Errorf("flight %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &f, nil
}

// DeepCopyObject makes a Flight a runtime.Object, for Events about it.
func (f *Flight) DeepCopyObject() runtime.Object {
	c := *f
	f.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.Status = *f.Status.DeepCopy()
	return &c
}
