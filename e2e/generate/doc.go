// Package generate holds the test that keeps generated code current: it
// runs make generate's script (e2e/tools/generate.sh) in a copy of the
// tree and fails, naming the files, when anything it writes differs from
// what is committed: the Flight API's deepcopy, clientset, listers and
// informers, its CRD manifest, the gRPC API's Go code, and the Grafana
// dashboard deploy/dashboards/fledge.json (e2e/tools/dashboards).
//
// Run it with: go test -tags e2e -count=1 ./e2e/generate/
package generate
