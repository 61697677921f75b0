// Package ship holds the end-to-end tests of what a platform team installs
// and runs: the Helm chart installed into the sandbox's API server and the
// engine run exactly as it renders, the dashboard's and alerts' metrics
// scraped from a running engine, and fledgectl reaching the API through a
// kubeconfig whose user authenticates with an exec plugin.
//
// They are a package of their own so that they run beside e2e/rollout and
// e2e/compare. Run them with:
//
//	go test -tags e2e -count=1 ./e2e/ship/
package ship
