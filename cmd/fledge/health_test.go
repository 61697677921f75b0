package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection"
)

// /readyz says ready only once the caches have synced: before, a replica
// would be sent API reads it answers from empty caches.
func TestReadyzWaitsForTheCaches(t *testing.T) {
	var synced atomic.Bool
	h := healthHandler(leaderelection.NewLeaderHealthzAdaptor(20*time.Second), synced.Load)
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := get(); code != http.StatusServiceUnavailable {
		t.Errorf("caches not synced: %d, want 503", code)
	}
	synced.Store(true)
	if code := get(); code != http.StatusOK {
		t.Errorf("caches synced: %d, want 200", code)
	}
}
