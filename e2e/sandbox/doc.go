// Package sandbox runs the test bed that fledge's end-to-end suites and
// `make demo` use: a real Kubernetes control plane on one machine, without
// network or containers.
//
// Start launches, on free loopback ports and in a private temp directory,
// etcd 3.6, kube-apiserver (RBAC on, a static admin token, a kubeconfig
// written out), kube-controller-manager (deployment, replicaset, garbage
// collector, namespace, resource quota and horizontal pod autoscaler
// controllers; the autoscaler has no metrics API, so it acts on its
// autoscalers' bounds), kube-scheduler, kwok (which plays
// the kubelet for Ready fake nodes and marks pods Running and Ready),
// Istio's CRDs, the mesh emulator (package mesh, the one stand-in: there is
// no Envoy here) and a real Prometheus that scrapes the emulator every
// second. The binaries come from `make tools` (bin/ at the repository root).
//
// Every child process leads its own process group and is SIGKILLed by the
// kernel if the test binary dies (Pdeathsig), so a panicking or timed-out
// test leaves nothing behind; Stop terminates them in reverse order and
// reports any that outlived their kill. Each component logs to its own file
// under LogDir; failures name the file and quote its last lines.
//
// Test binaries share one sandbox through Suite, which starts it on first
// use and keeps the logs when a test fails.
package sandbox
