// Package edges holds the end-to-end tests of a rollout's edges: canaries
// sized with the Deployment's autoscaler, the watch after a promotion, and
// config changes canaried like images (the emulator's pods read their
// ConfigMaps and Secrets as the kubelet delivers them), each
// against the sandbox: a real kube-apiserver and controller manager (its
// horizontal-pod-autoscaler controller included), real Prometheus, the
// mesh emulator and a real fledge process. They run with the e2e build tag
// (make e2e).
package edges
