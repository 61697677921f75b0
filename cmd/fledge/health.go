package main

import (
	"fmt"
	"net/http"

	"k8s.io/client-go/tools/leaderelection"
)

// healthHandler serves /healthz and /readyz.
//
// /healthz: alive. A leader that stopped renewing its lease is not; a
// replica waiting for its preconditions (Istio's CRDs, Prometheus) is:
// restarting it would fix nothing and hide the reason behind back-offs.
//
// /readyz: this replica can serve. It has started (notReady, the
// preconditions' reason, is "") and its caches have synced. It does not
// ask for the lease: followers serve the API's reads, and a new replica in
// a rolling update cannot hold the lease before the old one lets it go.
// Nor does it ask whether Prometheus answers now: once started, an outage
// holds rollouts, and readiness would only take the API away (see
// preconditions).
func healthHandler(leader *leaderelection.HealthzAdaptor, notReady func() string, synced func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := leader.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		if !synced() {
			http.Error(w, "informer caches not synced yet, or fledge may read none of its namespaces (the log and fledge_namespace_watched say why)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
