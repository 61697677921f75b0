//go:build e2e

package scale_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// What the bench prints to say where time and memory went: the API
// server's load, the engine's failed looks, its heap.

// apiserverLoad is what the API server had served, from its own /metrics:
// writes by verb and resource, and the time requests waited in its
// priority-and-fairness queues, by priority level.
type apiserverLoad struct {
	writes map[string]float64 // "verb resource[/subresource]"
	reads  map[string]float64 // by verb: GET, LIST, WATCH
	// waited and waits are the seconds waited and the requests that
	// waited, by priority level.
	waited, waits map[string]float64
}

func apiserverNow(b *testing.B, sb *sandbox.Sandbox) apiserverLoad {
	raw, err := sb.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Logf("the API server's metrics: %v", err)
		return apiserverLoad{}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		b.Logf("the API server's metrics: %v", err)
		return apiserverLoad{}
	}
	out := apiserverLoad{writes: map[string]float64{}, reads: map[string]float64{}, waited: map[string]float64{}, waits: map[string]float64{}}
	if f := families["apiserver_request_total"]; f != nil {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch l["verb"] {
			case "GET", "LIST", "WATCH", "CONNECT":
				out.reads[l["verb"]] += m.GetCounter().GetValue()
				continue
			}
			r := l["resource"]
			if s := l["subresource"]; s != "" {
				r += "/" + s
			}
			out.writes[strings.ToLower(l["verb"])+" "+r] += m.GetCounter().GetValue()
		}
	}
	if f := families["apiserver_flowcontrol_request_wait_duration_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, p := range m.GetLabel() {
				if p.GetName() == "priority_level" {
					out.waited[p.GetValue()] += m.GetHistogram().GetSampleSum()
					out.waits[p.GetValue()] += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return out
}

// describeLoad says what the API server wrote between two readings, secs
// apart: in all and per second, the largest dozen by verb and resource,
// and the mean wait in its queues by priority level.
func describeLoad(before, after apiserverLoad, secs float64) string {
	if after.writes == nil || before.writes == nil {
		return "(unknown)"
	}
	d := map[string]float64{}
	total := 0.0
	for k, v := range after.writes {
		if n := v - before.writes[k]; n > 0 {
			d[k] = n
			total += n
		}
	}
	calls := slices.SortedFunc(maps.Keys(d), func(a, b string) int { return cmp.Compare(d[b], d[a]) })
	var top []string
	for _, k := range calls[:min(12, len(calls))] {
		top = append(top, fmt.Sprintf("%s %.0f", k, d[k]))
	}
	var waits []string
	for _, lvl := range slices.Sorted(maps.Keys(after.waits)) {
		if n := after.waits[lvl] - before.waits[lvl]; n > 0 {
			waits = append(waits, fmt.Sprintf("%s %.0f ms (%.0f requests)", lvl, 1000*(after.waited[lvl]-before.waited[lvl])/n, n))
		}
	}
	var reads []string
	for _, v := range slices.Sorted(maps.Keys(after.reads)) {
		reads = append(reads, fmt.Sprintf("%s %.0f", v, after.reads[v]-before.reads[v]))
	}
	return fmt.Sprintf("%.0f writes (%.0f a second): %s; reads: %s; mean wait in the API server's queues: %s", total, total/secs, strings.Join(top, ", "), strings.Join(reads, ", "), strings.Join(waits, ", "))
}

// failedReconciles counts the engine's failed looks in its log, by the
// shape of their error (digits made N, cut at 120 characters), the
// commonest first: each is retried through the queue's rate limiter.
func failedReconciles(b *testing.B, logPath string) string {
	raw, err := os.ReadFile(logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	digits := regexp.MustCompile(`[0-9]+`)
	counts := map[string]int{}
	total := 0
	for line := range strings.Lines(string(raw)) {
		if !strings.Contains(line, `msg="reconcile failed"`) {
			continue
		}
		total++
		_, e, _ := strings.Cut(line, ` err=`)
		e = digits.ReplaceAllString(strings.TrimSpace(e), "N")
		if len(e) > 120 {
			e = e[:120]
		}
		counts[e]++
	}
	shapes := slices.SortedFunc(maps.Keys(counts), func(a, b string) int { return cmp.Compare(counts[b], counts[a]) })
	var top []string
	for _, s := range shapes[:min(5, len(shapes))] {
		top = append(top, fmt.Sprintf("%d× %s", counts[s], s))
	}
	return fmt.Sprintf("%d in all; %s", total, strings.Join(top, "; "))
}

// heapTop is the engine's heap profile, its largest holders in use; the
// profile is kept under the temporary directory for go tool pprof.
func heapTop(b *testing.B, bin, addr string) string {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Sprintf("  (no heap profile: %v)\n", err)
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp("", "fledge-scale-heap-*.pb.gz")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Sprintf("  (no heap profile: %v)\n", err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=12", bin, f.Name()).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("  (go tool pprof: %v)\n", err)
	}
	return fmt.Sprintf("  %s (go tool pprof -sample_index=inuse_space %s %s)\n%s", f.Name(), bin, f.Name(), out)
}

// apiserverProfile is a CPU profile of the API server over d (the
// sandbox started with Profiling), its heaviest call paths.
func apiserverProfile(sb *sandbox.Sandbox, d time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	raw, err := sb.Kube.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
		Param("seconds", strconv.Itoa(int(d.Seconds()))).DoRaw(ctx)
	return profileTop("apiserver", raw, err)
}

// controllerManagerProfile is kube-controller-manager's, over d.
func controllerManagerProfile(sb *sandbox.Sandbox, d time.Duration) string {
	raw, err := sb.ControllerManagerProfile(context.Background(), d)
	return profileTop("kube-controller-manager", raw, err)
}

// ownProfile is this process's over d: the mesh emulator, its 2,000
// clients and the bench's watches.
func ownProfile(d time.Duration) string {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return profileTop("bench", nil, err)
	}
	time.Sleep(d)
	pprof.StopCPUProfile()
	return profileTop("bench", buf.Bytes(), nil)
}

// profileTop keeps a CPU profile under the temporary directory for go
// tool pprof and returns its heaviest call paths.
func profileTop(name string, raw []byte, err error) string {
	if err != nil {
		return fmt.Sprintf("  (no profile of %s: %v)\n", name, err)
	}
	f, err := os.CreateTemp("", "fledge-scale-"+name+"-*.pb.gz")
	if err != nil {
		return fmt.Sprintf("  (no profile of %s: %v)\n", name, err)
	}
	defer f.Close()
	if _, err := f.Write(raw); err != nil {
		return fmt.Sprintf("  (no profile of %s: %v)\n", name, err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=40", f.Name()).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("  (go tool pprof: %v)\n", err)
	}
	return fmt.Sprintf("  %s (go tool pprof %s)\n%s", f.Name(), f.Name(), out)
}

// queuesNow reads kube-controller-manager's workqueue metrics for the
// Deployment and ReplicaSet controllers: adds, retries, and the seconds
// items waited in the queue and were worked on (sums and counts).
func queuesNow(sb *sandbox.Sandbox) map[string]float64 {
	raw, err := sb.ControllerManagerGet(context.Background(), "/metrics", 30*time.Second)
	if err != nil {
		return nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	// Its client's waits, all verbs together: for its rate limit
	// (--kube-api-qps, --kube-api-burst) and on the API server's answers.
	for _, name := range []string{"rest_client_rate_limiter_duration_seconds", "rest_client_request_duration_seconds"} {
		for _, m := range families[name].GetMetric() {
			if h := m.GetHistogram(); h != nil {
				out["client "+name+" sum"] += h.GetSampleSum()
				out["client "+name+" count"] += float64(h.GetSampleCount())
			}
		}
	}
	for _, name := range []string{"workqueue_adds_total", "workqueue_retries_total", "workqueue_queue_duration_seconds", "workqueue_work_duration_seconds"} {
		for _, m := range families[name].GetMetric() {
			queue := ""
			for _, p := range m.GetLabel() {
				if p.GetName() == "name" {
					queue = p.GetValue()
				}
			}
			if queue != "deployment" && queue != "replicaset" {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				out[queue+" "+name+" sum"] = h.GetSampleSum()
				out[queue+" "+name+" count"] = float64(h.GetSampleCount())
			} else {
				out[queue+" "+name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// describeQueues says what the two controllers' queues did between two
// readings d apart, each with its workers: how busy they were too.
func describeQueues(before, after map[string]float64, d time.Duration, workers int) string {
	if before == nil || after == nil {
		return "(unknown)"
	}
	delta := func(k string) float64 { return after[k] - before[k] }
	// mean is histogram h's mean between the readings, in milliseconds.
	mean := func(h string) float64 {
		if n := delta(h + " count"); n > 0 {
			return 1000 * delta(h+" sum") / n
		}
		return 0
	}
	var parts []string
	for _, q := range []string{"deployment", "replicaset"} {
		// Its workers' share of the time spent on items: near 100%, the
		// queue grows for as long as items keep coming.
		busy := 100 * delta(q+" workqueue_work_duration_seconds sum") / (float64(workers) * d.Seconds())
		parts = append(parts, fmt.Sprintf("%s: %.0f adds, %.0f retries, %.0f ms mean in the queue, %.0f ms mean worked on, its %d workers busy %.0f%% of the time",
			q, delta(q+" workqueue_adds_total"), delta(q+" workqueue_retries_total"), mean(q+" workqueue_queue_duration_seconds"), mean(q+" workqueue_work_duration_seconds"), workers, busy))
	}
	parts = append(parts, fmt.Sprintf("its client: %.0f requests, %.1f ms mean waiting for its rate limit, %.0f ms mean for the answer",
		delta("client rest_client_request_duration_seconds count"), mean("client rest_client_rate_limiter_duration_seconds"), mean("client rest_client_request_duration_seconds")))
	return strings.Join(parts, "; ")
}

// loadOver reads the API server's writes and each component's CPU now and
// again d later, and then sends what happened in between, with
// kube-controller-manager's queues and client.
func loadOver(b *testing.B, sb *sandbox.Sandbox, d time.Duration) <-chan string {
	loadBefore, cpuBefore, queuesBefore := apiserverNow(b, sb), cpuNow(sb), queuesNow(sb)
	out := make(chan string, 1)
	time.AfterFunc(d, func() {
		s := describeLoad(loadBefore, apiserverNow(b, sb), d.Seconds()) + "; CPU, in cores: " + cpuBetween(cpuBefore, cpuNow(sb), d)
		s += "; kube-controller-manager: " + describeQueues(queuesBefore, queuesNow(sb), d, sb.ControllerSyncs())
		out <- s
	})
	return out
}

// allIn reports whether every key is in m.
func allIn(m map[string]time.Time, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}
