package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of the Flight.
const GroupName = "fledge.dev"

// SchemeGroupVersion is the group and version the types are registered as.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// FlightResource is the Flight custom resource (deploy/crds).
var FlightResource = SchemeGroupVersion.WithResource("flights")

// Resource takes an unqualified resource and returns it group-qualified.
// The generated listers name it in their NotFound errors.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

var (
	// SchemeBuilder registers the types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the types to a scheme: the generated clientset's
	// scheme has them, and so must an event recorder's, for Events about
	// Flights.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &Flight{}, &FlightList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
