// Package strategies holds the end-to-end tests of fledge's rollout
// strategies other than the weighted canary (blue/green), each against
// the sandbox: a real kube-apiserver, real Prometheus, the mesh emulator
// and a real fledge process. They run with the e2e build tag (make e2e).
package strategies
