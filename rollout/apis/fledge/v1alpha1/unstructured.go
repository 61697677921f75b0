package v1alpha1

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

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
