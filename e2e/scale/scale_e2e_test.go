//go:build e2e

package scale_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
)

// The sandbox as a cluster of thousands of workloads runs it: Prometheus
// scrapes every 5 s (a production one, every 15-30 s), the mesh's metrics
// are 8 scrape targets (in Istio every sidecar is one), and the Telemetry
// API keeps only what is read: the server's sidecar reports every request
// a pod served (the client's report is dropped), and the labels nobody
// selects by (identities, clusters, revisions, the service's FQDN) are
// removed. At 1,000 apps the default exposition was one 60 MB target that
// took longer to scrape than the 1 s timeout. The mesh batches
// configuration changes as istiod does by default (100 ms, at most 10 s
// under a steady stream): with the tests' shorter batching (at most
// 500 ms), rebuilding the routing of 2,000 apps was a quarter of the
// bench process's CPU, which took 0.40-0.44 of the 2 cores in a burst of
// rollouts (0.30 since).
var suite = sandbox.Suite{Options: sandbox.Options{
	MeshSeed: 11, ScrapeInterval: 5 * time.Second, MeshShards: 8, MeshDebounce: 100 * time.Millisecond, MeshDebounceMax: 10 * time.Second, Profiling: true,
	ControllerSyncs: controllerSyncs(),
	MeshTelemetry: mesh.Telemetry{DisableClientMetrics: true, RemoveTags: []string{
		"source_principal", "destination_principal", "source_cluster", "destination_cluster",
		"connection_security_policy", "source_canonical_revision", "destination_canonical_revision", "destination_service",
	}},
}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

const (
	engineNamespace = "fledge-system"
	// appsPerNamespace is how the apps are spread: teams of 50.
	appsPerNamespace = 50
)

// scalePolicies: two steps of 10 s, judged by the error-rate comparison
// (a step moves on after its interval unless the canary is shown worse).
const scalePolicies = `
policies:
  scale:
    steps: [30, 60]
    interval: 10s
    minInterval: 5s
    lookInterval: 5s
    scrapeInterval: 5s
    metrics:
    - {name: error-rate, maxIncrease: 0.05}
`

// BenchmarkScale runs one engine over N opted-in Deployments (1 replica,
// 1 request a second each) and rolls M of them out at once, then reports
// what make bench-scale prints. N and M come from FLEDGE_SCALE_N and
// FLEDGE_SCALE_M (default 200 and 40).
// burst is how long after a burst of changes the API server's load is
// read: the burst of starts.
const burst = 20 * time.Second

func BenchmarkScale(b *testing.B) {
	n, m := envInt(b, "FLEDGE_SCALE_N", 200), envInt(b, "FLEDGE_SCALE_M", 40)
	if m > n {
		b.Fatalf("M=%d rollouts of N=%d apps", m, n)
	}
	sb := suite.Get(b)
	ctx := context.Background()
	bin := engineBinary(b, sb)

	var namespaces []string
	for range (n + appsPerNamespace - 1) / appsPerNamespace {
		ns := sb.Namespace(b)
		if err := sb.ApplyRBAC(ctx, repoFile("deploy/rbac-namespace.yaml"), ns); err != nil {
			b.Fatal(err)
		}
		namespaces = append(namespaces, ns)
	}
	type app struct{ ns, name string }
	apps := make([]app, n)
	for i := range apps {
		apps[i] = app{namespaces[i/appsPerNamespace], fmt.Sprintf("app-%04d", i)}
	}

	policyFile := filepath.Join(b.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(scalePolicies), 0o644); err != nil {
		b.Fatal(err)
	}
	// The apps first, at the sandbox's pace: an engine installed into a
	// cluster that already has N opted-in Deployments.
	began := time.Now()
	parallel(b, len(apps), func(i int) error {
		a := apps[i]
		sb.CreateApp(b, a.ns, sandbox.App{Name: a.name, Annotations: map[string]string{rollout.AnnotationRollout: "scale"}})
		return sb.Mesh.AddClient(mesh.Client{Name: "client-" + a.name, Namespace: a.ns, Host: a.name, RPS: 1})
	})
	created := time.Since(began)
	// And rolled out: fledge takes a Deployment over once its own rollout
	// is done, so adoption is timed from a cluster at rest.
	atRest(b, sb, namespaces, "the apps' own rollouts")
	available := time.Since(began)
	// What the burst of starts below asks of Kubernetes, timed without
	// fledge first: the part of a first weight's time that is not fledge's.
	alone := kubernetesAlone(b, sb, namespaces, m, burst)
	flights := watchFlights(b, sb)
	const lateLabel = "scale.fledge.dev/late=true"
	pauses := watchPauses(b, sb, lateLabel)
	canaries, canaryPods := watchCanaries(b, sb, nil), watchCanaryPods(b, sb, nil)

	// Adoption: from the engine's start until every Flight is Idle.
	metricsAddr, pprofAddr := freeAddr(b), freeAddr(b)
	cpuStart := cpuNow(sb)
	started := time.Now()
	args := []string{
		"--kubeconfig=" + sb.ServiceAccountKubeconfig(b, engineNamespace, "fledge"), "--policies=" + policyFile,
		"--prometheus-url=" + sb.PrometheusURL, "--metrics-addr=" + metricsAddr, "--health-addr=0", "--pprof-addr=" + pprofAddr,
		"--namespaces=" + strings.Join(namespaces, ","), "--leader-election-namespace=" + engineNamespace,
		"--leader-election-id=fledge-scale", "--identity=fledge-scale",
	}
	// make bench-scale ENGINE_FLAGS="--workers=32": the engine's flags to try.
	args = append(args, strings.Fields(os.Getenv("FLEDGE_SCALE_ENGINE_FLAGS"))...)
	engine, err := sb.StartProcess("fledge-scale", nil, bin, args...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = engine.Stop() })
	if err := sb.AddScrapeTarget("fledge-scale", metricsAddr); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, len(apps))
	for i, a := range apps {
		keys[i] = a.ns + "/" + a.name
	}
	flights.wait(b, 10*time.Minute, "every Flight Idle", func(c *clock) bool { return len(c.idle) >= n })
	adoption := time.Since(started)
	cpuAdopted := cpuNow(sb)
	// Kubernetes' Deployment controller has 2,000 pauses to observe (a
	// status write each, at its own pace): the rollouts start once it has,
	// or they would be timed behind its backlog.
	atRest(b, sb, namespaces, "the Deployment controller's observing the pauses")
	fmt.Printf("the Deployment controller observed every pause %s after the last Flight was Idle\n", (time.Since(started) - adoption).Round(100*time.Millisecond))
	// The Flight versions a take-over wrote (the create, then each status
	// write up to Idle), and the longest such trail.
	flights.mu.Lock()
	versions, longest := 0, ""
	for _, k := range keys {
		versions += len(flights.trail[k])
		if len(flights.trail[k]) > len(flights.trail[longest]) {
			longest = k
		}
	}
	fmt.Printf("Flight versions per take-over (its create and status writes, up to Idle): %.2f; the most, %s: %s\n",
		float64(versions)/float64(len(keys)), longest, strings.Join(flights.trail[longest], " | "))
	flights.mu.Unlock()

	// M template changes at once; while they roll out, a few teams opt
	// new Deployments in, which must be paused at once however busy the
	// engine is.
	before := scrape(b, metricsAddr)
	var adoptCalls []string
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if rest, ok := strings.CutPrefix(k, "fledge_kube_requests_total"); ok && before[k] > 0 {
			adoptCalls = append(adoptCalls, fmt.Sprintf("%s %.2f", rest, before[k]/float64(n)))
		}
	}
	// Each Deployment's times count from its own template change (the
	// patch's answer: the change is stored by then), not from the first:
	// the bench's own 200 patches, through an API server the burst
	// loads, take seconds to write.
	// The API server's load in the burst of starts: its first 20 s.
	burstLoad, burstProfile := loadOver(b, sb, burst), make(chan string, 1)
	go func() { burstProfile <- apiserverProfile(sb, burst) }()
	changed := time.Now()
	changedAt := map[string]time.Time{}
	var changedMu sync.Mutex
	parallel(b, m, func(i int) error {
		a := apps[i]
		patch := fmt.Appendf(nil, `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"example.com/%s:v2"}]}}}}`, a.name)
		_, err := sb.Kube.AppsV1().Deployments(a.ns).Patch(ctx, a.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		changedMu.Lock()
		changedAt[a.ns+"/"+a.name] = time.Now()
		changedMu.Unlock()
		return err
	})
	patched := time.Since(changed)
	late := min(20, len(namespaces)*2)
	optedIn := map[string]time.Time{}
	var lateMu sync.Mutex
	time.Sleep(2 * time.Second) // into the rollouts' first steps
	parallel(b, late, func(i int) error {
		ns, name := namespaces[i%len(namespaces)], fmt.Sprintf("late-%02d", i)
		at := time.Now()
		sb.CreateApp(b, ns, sandbox.App{Name: name, Labels: map[string]string{"app": name, "scale.fledge.dev/late": "true"},
			Annotations: map[string]string{rollout.AnnotationRollout: "scale"}})
		lateMu.Lock()
		optedIn[ns+"/"+name] = at
		lateMu.Unlock()
		return nil
	})
	rolledKeys := keys[:m]
	flights.wait(b, 20*time.Minute, "every rollout Succeeded", func(c *clock) bool { return allIn(c.done, rolledKeys) })
	flights.mu.Lock()
	firstWeight := sinceEach(flights.weighted, rolledKeys, changedAt)
	toStart := sinceEach(flights.started, rolledKeys, changedAt)
	toReady := sinceEach(canaries(), rolledKeys, changedAt)
	toPods := durations(sinceEach(canaryPods(), rolledKeys, changedAt))
	succeeded := sinceEach(flights.done, rolledKeys, changedAt)
	firstWeightFromFirst := since(flights.weighted, rolledKeys, changed)
	flights.mu.Unlock()
	rolled := map[string]bool{}
	for _, k := range rolledKeys {
		rolled[k] = true
	}
	pausedAt := pauses()
	toPause := map[string]time.Duration{}
	for k, at := range optedIn {
		if p, ok := pausedAt[k]; ok {
			toPause[k] = p.Sub(at)
		} else {
			toPause[k] = time.Since(at) // not yet: at least this long
		}
	}
	allDone := slices.Max(slices.Collect(maps.Values(since(flights.done, rolledKeys, changed)))) // from the first change
	cpuDone, rolling := cpuNow(sb), time.Since(changed)
	after := scrape(b, metricsAddr)
	// The Events fledge recorded about the rolled-out apps, by reason
	// (count includes repeats the recorder aggregated).
	byReason := map[string]int32{}
	for _, ns := range namespaces {
		events, err := sb.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range events.Items {
			if rolled[ns+"/"+e.InvolvedObject.Name] && e.Source.Component == "fledge" && e.LastTimestamp.Time.After(changed.Add(-time.Second)) {
				byReason[e.Reason] += max(e.Count, 1)
			}
		}
	}
	var reasons []string
	for _, r := range slices.Sorted(maps.Keys(byReason)) {
		reasons = append(reasons, fmt.Sprintf("%s %.1f", r, float64(byReason[r])/float64(m)))
	}
	fmt.Printf("Events per rollout by reason: %s\n", strings.Join(reasons, ", "))
	// The slowest rollout's decision log: where its time went.
	slowest, slowestAt := "", time.Duration(0)
	for k, d := range succeeded {
		if d > slowestAt {
			slowest, slowestAt = k, d
		}
	}
	if ns, name, ok := strings.Cut(slowest, "/"); ok {
		if f, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			for _, d := range f.Status.Decisions {
				if d.At.Time.After(changed) {
					fmt.Printf("slowest, %s: +%s %s step %d at %d%%: %s", slowest, d.At.Time.Sub(changed).Round(time.Second), d.Verdict, d.Step, d.Weight, d.Message)
					fmt.Println()
				}
			}
		}
	}

	apiCalls, lists := 0.0, 0.0
	for k, v := range after {
		if strings.HasPrefix(k, "fledge_kube_requests_total{") {
			d := v - before[k]
			apiCalls += d
			if strings.Contains(k, `verb="list"`) {
				lists += d
			}
		}
	}
	queries := sumPrefix(after, "fledge_prometheus_queries_total") - sumPrefix(before, "fledge_prometheus_queries_total")
	var byCall []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if rest, ok := strings.CutPrefix(k, "fledge_kube_requests_total"); ok {
			if d := after[k] - before[k]; d > 0 {
				byCall = append(byCall, fmt.Sprintf("%s %.1f", rest, d/float64(m)))
			}
		}
	}
	reconcile := histogramDelta(before, after, "fledge_reconcile_duration_seconds", "")
	decision := histogramDelta(before, after, "fledge_decision_duration_seconds", "")
	cpu := after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]
	apiserver, _ := sb.ResidentBytes("kube-apiserver")
	prom, _ := sb.ResidentBytes("prometheus")
	// The slowest target of each job over the rollouts, and its largest
	// exposition; a failed scrape (over the timeout) shows as up 0.
	window := fmt.Sprintf("[%ds]", int(allDone.Seconds())+1)
	scrapes, err := sb.QueryVector(ctx, `max by (job) (max_over_time(scrape_duration_seconds`+window+`))`, "job")
	if err != nil {
		b.Log(err)
	}
	samples, _ := sb.QueryVector(ctx, `max by (job) (max_over_time(scrape_samples_scraped`+window+`))`, "job")
	failed, _ := sb.QueryVector(ctx, `sum by (job) (count_over_time((up == 0)`+window+`))`, "job")
	targets, _ := sb.QueryVector(ctx, `count by (job) (up)`, "job")

	fw := durations(firstWeight)
	sc := durations(succeeded)
	// Looks at every Flight (idle ones too) and judged looks (checks
	// measured) while the M rolled out.
	looks := after["fledge_reconcile_duration_seconds_count"] - before["fledge_reconcile_duration_seconds_count"]
	judged := after["fledge_judged_looks_total"] - before["fledge_judged_looks_total"]
	tp := durations(toPause)
	fmt.Printf("(N=%d, M=%d) on %d namespaces; apps created in %s and rolled out in %s (before the engine started); engine flags %q\n", n, m, len(namespaces), created.Round(100*time.Millisecond), available.Round(100*time.Millisecond), os.Getenv("FLEDGE_SCALE_ENGINE_FLAGS"))
	fmt.Printf("adoption (engine start to every Flight Idle): %s\n", adoption.Round(100*time.Millisecond))
	fmt.Printf("API calls per adopted app by verb and resource: %s\n", strings.Join(adoptCalls, ", "))
	fmt.Printf("%d Deployments opted in during the rollouts, opt-in to paused: p50 %s, max %s (%d paused)\n", len(tp), q(tp, 0.5), q(tp, 1), len(pausedAt))
	fmt.Printf("%d template changes written in %s (each rollout's times below count from its own)\n", m, patched.Round(100*time.Millisecond))
	fmt.Printf("template change to first canary weight: p50 %s, p99 %s, max %s\n", q(fw, 0.5), q(fw, 0.99), q(fw, 1))
	ff := durations(firstWeightFromFirst)
	fmt.Printf("  from the first change sent (as measured before): p50 %s, p99 %s, max %s\n", q(ff, 0.5), q(ff, 0.99), q(ff, 1))
	ts, tr := durations(toStart), durations(toReady)
	fmt.Printf("  on the way: to the canary's start written p50 %s, p99 %s; to its first ready pod (its ReplicaSet's status) p50 %s, p99 %s; to its Deployment's status saying so p50 %s, p99 %s\n",
		q(ts, 0.5), q(ts, 0.99), q(toPods, 0.5), q(toPods, 0.99), q(tr, 0.5), q(tr, 0.99))
	fmt.Printf("template change to Succeeded: p50 %s, p99 %s, all %s\n", q(sc, 0.5), q(sc, 0.99), allDone.Round(100*time.Millisecond))
	fmt.Printf("reconcile p50 %s p99 %s; decision p50 %s p99 %s\n", ms(reconcile.quantile(0.5)), ms(reconcile.quantile(0.99)), ms(decision.quantile(0.5)), ms(decision.quantile(0.99)))
	fmt.Printf("API server in the rollouts' first %s: %s\n", burst, <-burstLoad)
	fmt.Printf("API server's CPU in those %s, by call path:\n%s", burst, <-burstProfile)
	fmt.Printf("failed looks (retried with backoff): %s\n", failedReconciles(b, engine.LogPath()))
	fmt.Printf("CPU adopting, in cores: %s\n", cpuBetween(cpuStart, cpuAdopted, adoption))
	fmt.Printf("CPU rolling out, in cores: %s\n", cpuBetween(cpuAdopted, cpuDone, rolling))
	fmt.Printf("where the time went, adopting: %s\n", timeWent(map[string]float64{}, before))
	fmt.Printf("where the time went, rolling out: %s\n", timeWent(before, after))
	fmt.Printf("%.0f looks, %.0f judged: per look %.2f API calls (%.3f LISTs); per judged look %.2f PromQL queries; per rollout %.1f API calls, %.1f queries\n",
		looks, judged, apiCalls/looks, lists/looks, queries/judged, apiCalls/float64(m), queries/float64(m))
	fmt.Printf("API calls per rollout by verb and resource: %s\n", strings.Join(byCall, ", "))
	fmt.Printf("engine RSS %.0f MiB, CPU %.0f%% of a core during the rollouts; API server RSS %.0f MiB; Prometheus RSS %.0f MiB\n",
		after["process_resident_memory_bytes"]/(1<<20), 100*cpu/allDone.Seconds(), float64(apiserver)/(1<<20), float64(prom)/(1<<20))
	fmt.Printf("engine Go heap in use %.0f MiB (of it, what the caches and the rest hold, from the profiler):\n", after["go_memstats_heap_inuse_bytes"]/(1<<20))
	fmt.Print(heapTop(b, bin, pprofAddr))
	for _, job := range slices.Sorted(maps.Keys(scrapes)) {
		fmt.Printf("scrape of %s (%.0f targets): slowest %.3f s, at most %.0f samples a target, %.0f failed scrapes\n", job, targets[job], scrapes[job], samples[job], failed[job])
	}
	b.ReportMetric(adoption.Seconds(), "s-adoption")
	b.ReportMetric(q(fw, 0.99).Seconds(), "s-first-weight-p99")
	b.ReportMetric(allDone.Seconds(), "s-all-succeeded")
	b.ReportMetric(reconcile.quantile(0.99)*1000, "ms-reconcile-p99")
	b.ReportMetric(apiCalls/looks, "api-calls/look")
	b.ReportMetric(queries/judged, "queries/judged-look")
	b.ReportMetric(after["process_resident_memory_bytes"]/(1<<20), "MiB-engine-rss")
	b.ReportMetric(alone.Seconds(), "s-kubernetes-alone-ready-p99")
	// The same apps once more, from a cluster at rest again.
	atRest(b, sb, namespaces, "the first rollouts' last writes")
	b.ReportMetric(rolloutAgain(b, sb, flights, rolledKeys, burst, engine.LogPath(), metricsAddr).Seconds(), "s-first-weight-p99-again")
}

// parallel runs fn for 0..n-1 on 16 workers and fails on the first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

// scrape reads the engine's /metrics into a map from the sample's name and
// labels, as written, to its value.
func scrape(b *testing.B, addr string) map[string]float64 {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

func sumPrefix(m map[string]float64, name string) float64 {
	total := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			total += v
		}
	}
	return total
}

// histogram is the difference of a histogram's cumulative buckets between
// two scrapes.
type histogram struct {
	bounds []float64
	counts []float64
}

// histogramDelta reads histogram name's series with the given labels, as
// written before le (`name="flights",`; "" for none).
func histogramDelta(before, after map[string]float64, name, labels string) histogram {
	var h histogram
	for k, v := range after {
		rest, ok := strings.CutPrefix(k, name+`_bucket{`+labels+`le="`)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		h.bounds = append(h.bounds, le)
		h.counts = append(h.counts, v-before[k])
	}
	idx := make([]int, len(h.bounds))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, c int) int { return cmpFloat(h.bounds[a], h.bounds[c]) })
	sorted := histogram{}
	for _, i := range idx {
		sorted.bounds = append(sorted.bounds, h.bounds[i])
		sorted.counts = append(sorted.counts, h.counts[i])
	}
	return sorted
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// components are the sandbox's processes whose CPU the bench reports, and
// "mesh" (the emulator, in this process with the bench).
var components = []string{"kube-apiserver", "etcd", "prometheus", "kube-controller-manager", "kube-scheduler", "kwok", "fledge-scale", "mesh"}

func cpuNow(sb *sandbox.Sandbox) map[string]float64 {
	out := map[string]float64{}
	for _, c := range components {
		if c == "mesh" {
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				out[c] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
			}
			continue
		}
		if v, err := sb.CPUSeconds(c); err == nil {
			out[c] = v
		}
	}
	return out
}

func cpuBetween(before, after map[string]float64, d time.Duration) string {
	var parts []string
	total := 0.0
	for _, c := range components {
		cores := (after[c] - before[c]) / d.Seconds()
		total += cores
		parts = append(parts, fmt.Sprintf("%s %.2f", c, cores))
	}
	return fmt.Sprintf("%s (total %.2f of %d cores)", strings.Join(parts, ", "), total, runtime.NumCPU())
}

// timeWent says where a look's time went between two scrapes: waiting in
// the queues, for the client's rate limit, for the API server, for
// Prometheus (p50 and p99, with the number of observations).
func timeWent(before, after map[string]float64) string {
	var waits []string
	for _, w := range []struct{ what, name, labels string }{
		{"in the flights queue", "fledge_workqueue_queue_duration_seconds", `name="flights",`},
		{"in the adoptions queue", "fledge_workqueue_queue_duration_seconds", `name="adoptions",`},
		{"for --kube-api-qps", "fledge_kube_client_throttle_seconds", ""},
		{"API get", "fledge_kube_request_duration_seconds", `verb="get",`},
		{"API patch", "fledge_kube_request_duration_seconds", `verb="patch",`},
		{"API create", "fledge_kube_request_duration_seconds", `verb="create",`},
		{"API update", "fledge_kube_request_duration_seconds", `verb="update",`},
		{"PromQL query", "fledge_prometheus_query_duration_seconds", ""},
	} {
		h := histogramDelta(before, after, w.name, w.labels)
		if n := h.total(); n > 0 {
			waits = append(waits, fmt.Sprintf("%s p50 %s p99 %s (%.0f)", w.what, ms(h.quantile(0.5)), ms(h.quantile(0.99)), n))
		}
	}
	return strings.Join(waits, "; ")
}

// total is the number of observations.
func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile is the upper bound of the bucket holding the q-quantile, as
// histogram_quantile would bound it (NaN without observations).
func (h histogram) quantile(q float64) float64 {
	if len(h.counts) == 0 || h.counts[len(h.counts)-1] == 0 {
		return math.NaN()
	}
	rank := q * h.counts[len(h.counts)-1]
	for i, c := range h.counts {
		if c >= rank {
			return h.bounds[i]
		}
	}
	return math.Inf(1)
}

func ms(seconds float64) string {
	if math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return fmt.Sprint(seconds)
	}
	return fmt.Sprintf("<=%.3g ms", seconds*1000)
}

func durations(m map[string]time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// q is the q-quantile of sorted durations (nearest rank).
func q(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))].Round(100 * time.Millisecond)
}
