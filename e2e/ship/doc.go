// Package ship holds the end-to-end tests of what a platform team installs
// and runs: the images (made twice, opened, run), the Helm chart (lint,
// template, schema refusals; installed into the sandbox's API server, the
// engine run exactly as it renders, a revision promoted, upgraded,
// uninstalled), the dashboard's and alerts' metrics scraped from a running
// engine and the alerts evaluated by a real Prometheus, kubectl get
// flights's columns, fledgectl reaching the API through a kubeconfig whose
// user authenticates with an exec plugin, and an engine started without
// Istio's API or a reachable Prometheus.
//
// They are a package of their own so that they run beside e2e/rollout and
// e2e/compare. Run them with:
//
//	go test -tags e2e -count=1 ./e2e/ship/
package ship
