package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

const ns = "demo"

// Options tunes the walk; the zero value is what `make demo` runs.
type Options struct {
	StepTime time.Duration // traffic per step before measuring (default 8s)
	Steps    []int32       // canary weights to walk through (default 0,10,25,50,100)
}

// Walk deploys a stable and a canary revision of a demo app, sends client
// traffic at them through a VirtualService and walks the canary's weight
// through the steps, printing Prometheus's view of each step to out.
func Walk(ctx context.Context, out io.Writer, sb *sandbox.Sandbox, opts Options) error {
	if opts.StepTime == 0 {
		opts.StepTime = 8 * time.Second
	}
	if opts.Steps == nil {
		opts.Steps = []int32{0, 10, 25, 50, 100}
	}
	if _, err := sb.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	revisions := []struct {
		name     string
		replicas int32
		behave   map[string]string
	}{
		{"podinfo-stable", 3, map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=60"}},
		{"podinfo-canary", 1, map[string]string{"sandbox.fledge.dev/latency-ms": "p50=30,p95=120", "sandbox.fledge.dev/error-rate": "0.04"}},
	}
	fmt.Fprintln(out, "deploying podinfo-stable (3 pods, healthy) and podinfo-canary (1 pod: 4% errors, slower)")
	for _, r := range revisions {
		if err := createRevision(ctx, sb, r.name, r.replicas, r.behave); err != nil {
			return err
		}
	}
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, svc("podinfo", map[string]string{"app": "podinfo"}), metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, r := range revisions {
		if _, err := sb.WaitDeploymentAvailable(ctx, ns, r.name, time.Minute); err != nil {
			return err
		}
	}
	// Fixed widths rather than a tabwriter: rows print as each step ends.
	const rowFormat = "%13s %13s %13s %15s %15s %14s %14s\n"
	fmt.Fprintf(out, rowFormat, "canary weight", "stable req/s", "canary req/s", "stable success", "canary success", "stable p95 ms", "canary p95 ms")
	var vs *istionetv1.VirtualService
	for i, w := range opts.Steps {
		var err error
		if vs, err = setWeight(ctx, sb, vs, w); err != nil {
			return err
		}
		if i == 0 {
			// Traffic starts once the VirtualService routes it.
			if err := sb.Mesh.AddClient(mesh.Client{Name: "frontend", Namespace: ns, Host: "podinfo", RPS: 300, Users: 500}); err != nil {
				return err
			}
			defer sb.Mesh.RemoveClient("frontend")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opts.StepTime):
		}
		row, err := measure(ctx, sb, opts.StepTime)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, rowFormat, fmt.Sprintf("%d%%", w),
			row.get("rate", "podinfo-stable", "%.0f"), row.get("rate", "podinfo-canary", "%.0f"),
			row.get("success", "podinfo-stable", "%.2f%%"), row.get("success", "podinfo-canary", "%.2f%%"),
			row.get("p95", "podinfo-stable", "%.0f"), row.get("p95", "podinfo-canary", "%.0f"))
	}

	fmt.Fprintln(out, "\nground truth from the mesh emulator (every request it routed):")
	for rev, c := range sb.Mesh.Served() {
		if rev.Namespace == ns {
			fmt.Fprintf(out, "  %-16s %6d requests, %5d errors\n", rev.Workload, c.Requests, c.Errors)
		}
	}
	return nil
}

type row map[string]map[string]float64

func (r row) get(metric, workload, format string) string {
	v, ok := r[metric][workload]
	if !ok {
		return "-"
	}
	if metric == "success" {
		v *= 100
	}
	return fmt.Sprintf(format, v)
}

// measure asks Prometheus, as fledge's analysis will, for each revision's
// request rate, success rate and p95 over the last step.
func measure(ctx context.Context, sb *sandbox.Sandbox, window time.Duration) (row, error) {
	sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q`, ns)
	w := fmt.Sprintf("%ds", int(window.Seconds())-2)
	rate := fmt.Sprintf(`sum by (destination_workload) (rate(istio_requests_total{%s}[%s]))`, sel, w)
	// A revision without traffic in the window has no success rate or p95
	// (0/0): "> 0" drops it, so the table shows "-", never a made-up number.
	served := fmt.Sprintf(`(%s > 0)`, rate)
	queries := map[string]string{
		"rate":    rate,
		"success": fmt.Sprintf(`sum by (destination_workload) (rate(istio_requests_total{%s,response_code!~"5.."}[%s])) / %s`, sel, w, served),
		"p95": fmt.Sprintf(`histogram_quantile(0.95, sum by (destination_workload, le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))
			and on (destination_workload) %s`, sel, w, served),
	}
	r := row{}
	for name, q := range queries {
		v, err := sb.QueryVector(ctx, q, "destination_workload")
		if err != nil {
			return nil, err
		}
		r[name] = v
	}
	return r, nil
}

func setWeight(ctx context.Context, sb *sandbox.Sandbox, vs *istionetv1.VirtualService, canary int32) (*istionetv1.VirtualService, error) {
	route := &networkingv1.HTTPRoute{Route: []*networkingv1.HTTPRouteDestination{
		{Destination: &networkingv1.Destination{Host: "podinfo-stable"}, Weight: 100 - canary},
		{Destination: &networkingv1.Destination{Host: "podinfo-canary"}, Weight: canary},
	}}
	vss := sb.Istio.NetworkingV1().VirtualServices(ns)
	var err error
	if vs == nil {
		vs, err = vss.Create(ctx, &istionetv1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
			Spec:       networkingv1.VirtualService{Hosts: []string{"podinfo"}, Http: []*networkingv1.HTTPRoute{route}},
		}, metav1.CreateOptions{})
	} else {
		vs = vs.DeepCopy()
		vs.Spec.Http = []*networkingv1.HTTPRoute{route}
		vs, err = vss.Update(ctx, vs, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return sb.Mesh.AppliedVersion("VirtualService", ns, vs.Name) == vs.ResourceVersion, nil
	})
	return vs, err
}

func createRevision(ctx context.Context, sb *sandbox.Sandbox, name string, replicas int32, behave map[string]string) error {
	labels := map[string]string{"app": "podinfo", "version": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: behave},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "podinfo", Image: "ghcr.io/stefanprodan/podinfo:6.7.0"}}},
			},
		},
	}
	if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := sb.Kube.CoreV1().Services(ns).Create(ctx, svc(name, labels), metav1.CreateOptions{})
	return err
}

func svc(name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}
