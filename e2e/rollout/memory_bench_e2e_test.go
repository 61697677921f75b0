//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	appsv1apply "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1apply "k8s.io/client-go/applyconfigurations/core/v1"
	metav1apply "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// unrelatedDeployments is how many Deployments of other teams the cluster
// holds in BenchmarkEngineMemory, spread over unrelatedNamespaces.
const (
	unrelatedDeployments = 5000
	unrelatedNamespaces  = 10
)

// BenchmarkEngineMemory measures the engine's memory in a cluster with
// 5,000 Deployments (and their ReplicaSets) fledge has nothing to do with,
// each the size kubectl apply leaves one (a last-applied annotation with a
// copy of the object, managedFields), and one opted-in app: cluster-wide
// (--all-namespaces, deploy/rbac-cluster.yaml), and namespaced to the
// app's namespace (the default install). It reports each engine's heap in
// use and resident memory once its caches have synced, and how long that
// took. Run it alone (make bench): the cluster-wide engine acts in every
// namespace of the sandbox.
func BenchmarkEngineMemory(b *testing.B) {
	sb := suite.Get(b)
	ns := sb.Namespace(b)
	fill(b, sb)
	shop := func() { sb.CreateApp(b, ns, appOf("shop", map[string]string{rollout.AnnotationRollout: "fast"}, nil)) }
	shop()

	measure := func(mode string, args ...string) {
		health := freeAddr(b)
		start := time.Now()
		e := startEngine(b, sb, ns, engineOptions{Name: mode, Args: append([]string{"--health-addr=" + health}, args...)})
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
			resp, err := http.Get("http://" + health + "/readyz")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			b.Fatalf("%s: the engine never became ready (log %s)", mode, e.LogPath())
		}
		ready := time.Since(start)
		sb.WaitFlight(b, ns, "shop", time.Minute, func(*v1alpha1.Flight) bool { return true })
		time.Sleep(10 * time.Second) // a few looks, and the garbage of the first lists collected
		m := scrapeCounters(b, e.MetricsAddr)
		heap, rss := m["go_memstats_heap_inuse_bytes"]/(1<<20), m["process_resident_memory_bytes"]/(1<<20)
		b.ReportMetric(heap, "MiB-heap-"+mode)
		b.ReportMetric(rss, "MiB-rss-"+mode)
		b.ReportMetric(ready.Seconds(), "s-ready-"+mode)
		b.Logf("%s: heap in use %.1f MiB, resident %.1f MiB, ready after %s", mode, heap, rss, ready.Round(100*time.Millisecond))
		_ = e.proc.Stop()
		e.proc = nil
	}
	for range b.N {
		// Cluster-wide: the ClusterRoleBinding of deploy/rbac-cluster.yaml.
		if err := sb.ApplyRBAC(context.Background(), repoFile("deploy/rbac-cluster.yaml"), ""); err != nil {
			b.Fatal(err)
		}
		measure("cluster-wide", "--all-namespaces", "--namespaces=")
		if err := sb.Kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), "fledge", metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		measure("namespaced")
	}
}

// fill creates unrelatedDeployments Deployments with 0 replicas in
// unrelatedNamespaces namespaces, as kubectl apply would (server-side,
// with the last-applied annotation client-side apply also leaves).
func fill(b *testing.B, sb *sandbox.Sandbox) {
	b.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", sb.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	kube := kubernetes.NewForConfigOrDie(rest.CopyConfig(cfg))
	start := time.Now()
	var namespaces []string
	for range unrelatedNamespaces {
		namespaces = append(namespaces, sb.Namespace(b))
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if err := applyUnrelated(kube, namespaces[i%len(namespaces)], fmt.Sprintf("team-app-%04d", i)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range unrelatedDeployments {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	// Both engines find the same cluster: every Deployment's ReplicaSet
	// made by the controller manager.
	err = wait.PollUntilContextTimeout(context.Background(), time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		sets, err := kube.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=unrelated", ResourceVersion: "0"})
		return err == nil && len(sets.Items) >= unrelatedDeployments, nil
	})
	if err != nil {
		b.Fatalf("the controller manager did not make the unrelated Deployments' ReplicaSets: %v", err)
	}
	b.Logf("%d unrelated Deployments in %d namespaces, with their ReplicaSets, made in %s", unrelatedDeployments, len(namespaces), time.Since(start).Round(time.Second))
}

// applyUnrelated applies one team's Deployment: a few labels, three
// containers with environment, resources and probes, and the annotation
// kubectl's client-side apply leaves (the whole object again).
func applyUnrelated(kube kubernetes.Interface, ns, name string) error {
	labels := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "unrelated", "team": "other"}
	var containers []*corev1apply.ContainerApplyConfiguration
	for c := range 3 {
		ct := corev1apply.Container().WithName(fmt.Sprintf("c%d", c)).WithImage("registry.example.com/team/"+name+":1.2.3").
			WithArgs("--listen=:8080", "--log-level=info", "--config=/etc/app/config.yaml").
			WithPorts(corev1apply.ContainerPort().WithName(fmt.Sprintf("http-%d", c)).WithContainerPort(int32(8080 + c))).
			WithReadinessProbe(corev1apply.Probe().WithHTTPGet(corev1apply.HTTPGetAction().WithPath("/readyz").WithPort(intstr.FromInt32(int32(8080 + c)))))
		for e := range 8 {
			ct = ct.WithEnv(corev1apply.EnvVar().WithName(fmt.Sprintf("SETTING_%d", e)).WithValue(strings.Repeat("v", 24)))
		}
		containers = append(containers, ct)
	}
	d := appsv1apply.Deployment(name, ns).WithLabels(labels).
		WithSpec(appsv1apply.DeploymentSpec().WithReplicas(0).
			WithSelector(metav1apply.LabelSelector().WithMatchLabels(labels)).
			WithTemplate(corev1apply.PodTemplateSpec().WithLabels(labels).WithSpec(corev1apply.PodSpec().WithContainers(containers...))))
	lastApplied, err := json.Marshal(d)
	if err != nil {
		return err
	}
	d = d.WithAnnotations(map[string]string{corev1.LastAppliedConfigAnnotation: string(lastApplied)})
	_, err = kube.AppsV1().Deployments(ns).Apply(context.Background(), d, metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
	return err
}
