//go:build e2e

package scale_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/engine"
)

// rolloutAgain changes the templates of the apps that rolled out (their
// Flights' keys) once more, and times each to its first canary weight as
// the first burst is timed; it returns the p99. Their canary Deployments
// (scaled to zero) and Services are kept from the first rollout, as for
// every rollout of an app but its first, on a later day: this is the
// burst a platform sees from day to day, where the first one also creates 200 Deployments
// and Services (each Service a ClusterIP, whose allocation in the API
// server counts every allocated address).
func rolloutAgain(b *testing.B, sb *sandbox.Sandbox, flights *clock, keys []string, burst time.Duration, logPath, metricsAddr string) time.Duration {
	b.Helper()
	ctx := context.Background()
	list, err := sb.Kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: engine.LabelFlight})
	if err != nil {
		b.Fatal(err)
	}
	revisions := map[string]string{}
	for _, d := range list.Items {
		revisions[d.Namespace+"/"+d.Labels[engine.LabelFlight]] = d.Annotations[engine.AnnotationRevision]
	}
	canaries := watchCanaries(b, sb, revisions)
	pods := watchCanaryPods(b, sb, revisions)
	fmt.Printf("  before it: %s\n", flightSizes(b, sb, keys))
	// A canary's first traffic waits until its predecessor's last requests
	// are in Prometheus (two scrapes after they ended): the apps roll out
	// again once that has passed for all of them, as on any later day,
	// rather than back to back.
	flights.mu.Lock()
	var ended time.Time
	for _, k := range keys {
		if t := flights.done[k]; t.After(ended) {
			ended = t
		}
	}
	flights.mu.Unlock()
	time.Sleep(time.Until(ended.Add(2*suite.Options.ScrapeInterval + time.Second)))
	flights.again()

	load := loadOver(b, sb, burst)
	// Where the CPU goes in this burst, in the API server, the controller
	// manager and this process.
	profiles := make([]chan string, 3)
	for i, profile := range []func() string{
		func() string { return apiserverProfile(sb, burst) },
		func() string { return controllerManagerProfile(sb, burst) },
		func() string { return ownProfile(burst) },
	} {
		profiles[i] = make(chan string, 1)
		go func() { profiles[i] <- profile() }()
	}
	engineBefore := scrape(b, metricsAddr)
	changedAt := map[string]time.Time{}
	var mu sync.Mutex
	parallel(b, len(keys), func(i int) error {
		ns, name, _ := strings.Cut(keys[i], "/")
		patch := fmt.Appendf(nil, `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"example.com/%s:v3"}]}}}}`, name)
		_, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		mu.Lock()
		changedAt[keys[i]] = time.Now()
		mu.Unlock()
		return err
	})
	flights.wait(b, 10*time.Minute, "every rollout again at its first canary weight", func(c *clock) bool { return allIn(c.weighted, keys) })
	engineAfter := scrape(b, metricsAddr)
	flights.mu.Lock()
	weighted := sinceEach(flights.weighted, keys, changedAt)
	fw := durations(weighted)
	ts := durations(sinceEach(flights.started, keys, changedAt))
	flights.mu.Unlock()
	tr := durations(sinceEach(canaries(), keys, changedAt))
	tp := durations(sinceEach(pods(), keys, changedAt))
	fmt.Printf("the same %d apps again (their canaries' Deployments and Services kept from the first rollout): template change to first canary weight: p50 %s, p99 %s, max %s\n", len(keys), q(fw, 0.5), q(fw, 0.99), q(fw, 1))
	fmt.Printf("  on the way: to the canary's start written p50 %s, p99 %s; to its first ready pod (its ReplicaSet's status) p50 %s, p99 %s; to its Deployment's status saying so p50 %s, p99 %s\n",
		q(ts, 0.5), q(ts, 0.99), q(tp, 0.5), q(tp, 0.99), q(tr, 0.5), q(tr, 0.99))
	reconcile := histogramDelta(engineBefore, engineAfter, "fledge_reconcile_duration_seconds", "")
	fmt.Printf("  the engine, until the last first weight: reconcile p50 %s p99 %s; waits %s\n", ms(reconcile.quantile(0.5)), ms(reconcile.quantile(0.99)), timeWent(engineBefore, engineAfter))
	fmt.Printf("  API server in their first %s: %s\n", burst, <-load)
	for i, who := range []string{"the API server", "kube-controller-manager", "the bench's process (the mesh emulator, its clients, the bench's watches)"} {
		fmt.Printf("  CPU of %s in those %s, by call path:\n%s", who, burst, <-profiles[i])
	}
	slowest := keys[0]
	for _, k := range keys {
		if weighted[k] > weighted[slowest] {
			slowest = k
		}
	}
	ns, name, _ := strings.Cut(slowest, "/")
	if f, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		for _, d := range f.Status.Decisions {
			if at := changedAt[slowest]; d.At.Time.After(at.Add(-time.Second)) {
				fmt.Printf("  slowest to its first weight, %s: +%s %s step %d at %d%%: %s\n", slowest, d.At.Time.Sub(at).Round(100*time.Millisecond), d.Verdict, d.Step, d.Weight, d.Message)
			}
		}
	}
	// And the engine's log of it, from its template change.
	if raw, err := os.ReadFile(logPath); err == nil {
		shown := 0
		for line := range strings.Lines(string(raw)) {
			if strings.Contains(line, `"`+slowest+`"`) || strings.Contains(line, "="+slowest+" ") {
				if t, err := time.Parse(time.RFC3339Nano, timeOf(line)); err == nil && t.After(changedAt[slowest]) && shown < 40 {
					fmt.Printf("    +%s %s", t.Sub(changedAt[slowest]).Round(10*time.Millisecond), line)
					shown++
				}
			}
		}
	}
	return q(fw, 0.99)
}

// flightSizes says how large the Flights of keys are as the API server
// stores them (JSON), on average and at most, and what the largest is
// made of: every status write decodes, validates and diffs the whole
// object.
func flightSizes(b *testing.B, sb *sandbox.Sandbox, keys []string) string {
	b.Helper()
	list, err := sb.Fledge.FledgeV1alpha1().Flights("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("Flights not listed (%v)", err)
	}
	var total, n int
	var largest []byte
	for i := range list.Items {
		f := &list.Items[i]
		if !slices.Contains(keys, f.Namespace+"/"+f.Name) {
			continue
		}
		raw, _ := json.Marshal(f)
		total, n = total+len(raw), n+1
		if len(raw) > len(largest) {
			largest = raw
		}
	}
	if n == 0 {
		return "none of their Flights found"
	}
	// The largest, by part: metadata's managed fields, the rest of its
	// metadata, its spec, and each field of its status.
	var obj struct {
		Metadata map[string]json.RawMessage `json:"metadata"`
		Spec     json.RawMessage            `json:"spec"`
		Status   map[string]json.RawMessage `json:"status"`
	}
	_ = json.Unmarshal(largest, &obj)
	parts := map[string]int{"spec": len(obj.Spec), "metadata.managedFields": len(obj.Metadata["managedFields"])}
	meta, _ := json.Marshal(obj.Metadata)
	parts["metadata (the rest)"] = len(meta) - parts["metadata.managedFields"]
	for k, v := range obj.Status {
		parts["status."+k] = len(v)
	}
	names := slices.SortedFunc(maps.Keys(parts), func(a, b string) int { return parts[b] - parts[a] })
	var of []string
	for _, k := range names[:min(8, len(names))] {
		of = append(of, fmt.Sprintf("%s %.1f", k, float64(parts[k])/1024))
	}
	kept := "not kept"
	if f, err := os.CreateTemp("", "fledge-scale-flight-*.json"); err == nil {
		_, _ = f.Write(largest)
		_ = f.Close()
		kept = "kept in " + f.Name()
	}
	return fmt.Sprintf("their %d Flights are %.1f KiB on average; the largest, %.1f KiB (%s), is in KiB: %s",
		n, float64(total)/float64(n)/1024, float64(len(largest))/1024, kept, strings.Join(of, ", "))
}

// timeOf is the time of an engine log line, JSON or text.
func timeOf(line string) string {
	if _, rest, ok := strings.Cut(line, `"time":"`); ok {
		t, _, _ := strings.Cut(rest, `"`)
		return t
	}
	if _, rest, ok := strings.Cut(line, "time="); ok {
		t, _, _ := strings.Cut(rest, " ")
		return t
	}
	return ""
}

// kubernetesAlone is what the first burst asks of Kubernetes, without
// fledge: m Deployments of one pod, with a Service each, created at once
// (spread over the namespaces), each timed from its create sent to its
// first ready pod. They are deleted, and their pods
// gone, before it returns. It prints the times and returns the p99.
func kubernetesAlone(b *testing.B, sb *sandbox.Sandbox, namespaces []string, m int, burst time.Duration) time.Duration {
	b.Helper()
	ctx := context.Background()
	const label = "scale.fledge.dev/alone"
	ready := watchDeployments(b, sb, label+"=true", func(d *appsv1.Deployment) (string, bool) {
		return d.Namespace + "/" + d.Name, d.Status.ReadyReplicas > 0
	})
	load := loadOver(b, sb, burst)
	// Each from its Deployment's create sent: its Service's create, after
	// it, may answer after its pod is ready.
	created, done := map[string]time.Time{}, map[string]time.Time{}
	var keys []string
	var mu sync.Mutex
	began := time.Now()
	parallel(b, m, func(i int) error {
		ns, name := namespaces[i%len(namespaces)], fmt.Sprintf("alone-%03d", i)
		at := time.Now()
		sb.CreateApp(b, ns, sandbox.App{Name: name, Labels: map[string]string{"app": name, label: "true"}})
		mu.Lock()
		created[ns+"/"+name], done[ns+"/"+name] = at, time.Now()
		keys = append(keys, ns+"/"+name)
		mu.Unlock()
		return nil
	})
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Minute, true, func(context.Context) (bool, error) {
		return len(ready()) >= m, nil
	})
	if err != nil {
		b.Fatalf("%d Deployments created at once: %d with a ready pod within 10m", m, len(ready()))
	}
	tr := durations(sinceEach(ready(), keys, created))
	fmt.Printf("Kubernetes alone, %d Deployments with a Service each created at once (no fledge; created, 16 at a time, in %s): to the first ready pod p50 %s, p99 %s, max %s\n",
		m, slices.MaxFunc(slices.Collect(maps.Values(done)), time.Time.Compare).Sub(began).Round(100*time.Millisecond), q(tr, 0.5), q(tr, 0.99), q(tr, 1))
	fmt.Printf("  API server in their first %s: %s\n", burst, <-load)
	// Gone again, pods and all, before the engine starts.
	for _, ns := range namespaces {
		sel := metav1.ListOptions{LabelSelector: label + "=true"}
		if err := sb.Kube.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
			b.Fatal(err)
		}
		svcs, err := sb.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range svcs.Items {
			if strings.HasPrefix(s.Name, "alone-") {
				if err := sb.Kube.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, ns := range namespaces {
			pods, err := sb.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: label + "=true"})
			if err != nil || len(pods.Items) > 0 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		b.Fatalf("the Deployments created at once: their pods not gone within 5m: %v", err)
	}
	return q(tr, 0.99)
}
