// Package apis holds the end-to-end tests of the Flight API against a real
// API server: the CRD generated from the Go types (deploy/crds) accepts the
// Flights fledge stored before those types were generated, and hands every
// field back, through the dynamic client and the generated typed client.
//
// Run them with: go test -tags e2e -count=1 ./e2e/apis/
package apis
