// Package traffic holds the end-to-end tests of traffic/istio, run with
// `go test -tags e2e ./e2e/traffic/` in the sandbox: the conformance suite
// of traffic/traffictest against a real API server, with the mesh emulator
// measuring the split that is actually applied, and a team's
// VirtualService that fledge must change in one place only.
package traffic
