// Package client is the root of the Flight API's generated client code
// (make generate, from rollout/apis/fledge/v1alpha1): clientset/versioned,
// the typed clientset, with a fake for tests; listers, which read Flights
// from an informer's cache; and informers, whose shared factory watches
// them. None of it is edited by hand; rollout/engine reads and writes
// Flights through it, as does anything outside fledge that wants to.
package client
