package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection"
)

// /readyz says ready only once fledge has started (its preconditions held)
// and its caches have synced, and says why not until then; /healthz stays
// ok all along, so that a replica waiting for Istio or Prometheus is not
// restarted.
func TestReadyzSaysWhatFledgeWaitsFor(t *testing.T) {
	const noIstio = "fledge has not started: it waits for its preconditions, checked every 30s:\nistio-crds: Istio's CRDs are not installed"
	var synced atomic.Bool
	var waiting atomic.Value
	h := healthHandler(leaderelection.NewLeaderHealthzAdaptor(20*time.Second), func() string { return waiting.Load().(string) }, synced.Load)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	for _, step := range []struct {
		name     string
		waiting  string
		synced   bool
		wantCode int
		wantBody string
	}{
		{"not ready while a precondition fails, saying which", noIstio, false, http.StatusServiceUnavailable, "istio-crds: Istio's CRDs are not installed"},
		{"the precondition's reason comes first, even with synced caches", noIstio, true, http.StatusServiceUnavailable, "istio-crds: Istio's CRDs are not installed"},
		{"not ready once started until the caches have synced", "", false, http.StatusServiceUnavailable, "informer caches not synced yet"},
		{"ready once started and synced", "", true, http.StatusOK, "ok"},
	} {
		waiting.Store(step.waiting)
		synced.Store(step.synced)
		code, body := get("/readyz")
		if code != step.wantCode || !strings.Contains(body, step.wantBody) {
			t.Errorf("%s: /readyz %d %q, want %d with %q", step.name, code, body, step.wantCode, step.wantBody)
		}
		if code, body := get("/healthz"); code != http.StatusOK {
			t.Errorf("%s: /healthz %d %q, want 200: a waiting replica is alive", step.name, code, body)
		}
	}
}
