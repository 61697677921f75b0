// Package analysis holds the end-to-end tests of fledge's analysis package:
// built-in and custom checks measured by the sandbox's real Prometheus on
// the mesh emulator's Istio telemetry, for revisions that misbehave on
// purpose, and "cannot measure" when there is no traffic or no Prometheus.
//
// Run them with: go test -tags e2e -count=1 ./e2e/analysis/
package analysis
