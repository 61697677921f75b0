package mesh

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// served records one request from a client in namespace from to a pod of
// workload app in namespace to.
func served(m *telemetry, from, to string) {
	src := peerSourceLabels(peerLabels{workload: "client", namespace: from, principal: "spiffe://cluster.local/ns/" + from + "/sa/default", app: "client", version: unknown, canonicalService: "client", canonicalRevision: "latest"})
	dst := destLabels{"app", to, "spiffe://cluster.local/ns/" + to + "/sa/default", "app", "v1", "app." + to + ".svc.cluster.local", "app", to, clusterName, "app", "v1"}
	m.record(&src, HTTP, &routed{resp: Response{Code: 200, Flags: "-", LatencyMs: 12}, host: dst[lDestinationService-firstDestinationLabel], ep: &endpoint{}, dst: &dst})
}

// series scrapes path from h and returns istio_requests_total's series as
// "reporter/source namespace/destination namespace", with their label names.
func series(t *testing.T, h http.Handler, path string) (map[string]float64, []string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.Reader(rec.Body))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	var names []string
	for _, m := range families["istio_requests_total"].GetMetric() {
		l := labelMap(m)
		names = slices.Sorted(maps.Keys(l))
		out[l["reporter"]+"/"+l["source_workload_namespace"]+"/"+l["destination_workload_namespace"]] = m.GetCounter().GetValue()
	}
	return out, names
}

// Shards split the series by the namespace of the proxy that reports
// them: the client's for reporter="source", the server's for
// "destination". Together they are exactly what /metrics serves, with no
// series twice.
func TestShardsSplitTheMetricsByTheReportingProxysNamespace(t *testing.T) {
	m, err := newTelemetry(4, Telemetry{})
	if err != nil {
		t.Fatal(err)
	}
	var namespaces []string
	for i := range 12 {
		namespaces = append(namespaces, fmt.Sprintf("team-%d", i))
	}
	for i, ns := range namespaces {
		served(m, ns, namespaces[(i+1)%len(namespaces)])
	}
	whole, _ := series(t, m.handler(), "/metrics")
	if len(whole) != 2*len(namespaces) {
		t.Fatalf("/metrics has %d series, want %d", len(whole), 2*len(namespaces))
	}
	union := map[string]float64{}
	nonEmpty := 0
	for i := range 4 {
		part, _ := series(t, m.handler(), fmt.Sprintf("/metrics?shard=%d", i))
		if len(part) > 0 {
			nonEmpty++
		}
		for k, v := range part {
			if _, twice := union[k]; twice {
				t.Errorf("series %s in two shards", k)
			}
			union[k] = v
			reporter, rest, _ := strings.Cut(k, "/")
			src, dst, _ := strings.Cut(rest, "/")
			proxy := map[string]string{"source": src, "destination": dst}[reporter]
			if m.shardOf(proxy) != m.shards[i] {
				t.Errorf("series %s in shard %d, not in its %s proxy's (namespace %s)", k, i, reporter, proxy)
			}
		}
	}
	if diff := cmp.Diff(whole, union); diff != "" {
		t.Errorf("the shards together differ from /metrics (-whole +shards):\n%s", diff)
	}
	if nonEmpty < 2 {
		t.Errorf("12 namespaces fell in %d shard(s) of 4", nonEmpty)
	}
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics?shard=4", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "want 0 to 3") {
		t.Errorf("shard 4 of 4: %d %q, want 400 naming the range", rec.Code, rec.Body)
	}
}

// The Telemetry API's changes: no client-reported series, and the removed
// labels gone from every series; a label fledge selects by cannot be
// removed, nor can a label Istio does not have.
func TestTelemetryDropsClientMetricsAndRemovedTags(t *testing.T) {
	removed := []string{"source_principal", "destination_principal", "connection_security_policy"}
	m, err := newTelemetry(1, Telemetry{DisableClientMetrics: true, RemoveTags: removed})
	if err != nil {
		t.Fatal(err)
	}
	served(m, "a", "b")
	got, names := series(t, m.handler(), "/metrics")
	if diff := cmp.Diff(map[string]float64{"destination/a/b": 1}, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	want := slices.DeleteFunc(istioLabelNames(), func(n string) bool { return slices.Contains(removed, n) })
	slices.Sort(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("label names (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"destination_workload", "reporter", "pod_name"} {
		if _, err := newTelemetry(1, Telemetry{RemoveTags: []string{bad}}); err == nil || !strings.Contains(err.Error(), "removeTags: \""+bad+"\"") {
			t.Errorf("removing %q: %v, want an error naming it", bad, err)
		}
	}
}
