package engine

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// The response comparator of a mirror stage (policy mirror.compareResponses):
// "<name>-mirror", a Deployment of fledge-loadtester's mirror-compare mode
// (traffic/mirrorcmp) and its Service, the mirror's destination. Each copy
// it receives it sends to the canary ("<name>-canary") and to stable alone
// ("<name>-stable"), and counts how the answers compare in
// fledge_mirror_comparisons_total, labelled with the canary's workload.
const (
	// ComparatorSuffix names the comparator's Deployment and Service.
	ComparatorSuffix = "-mirror"
	// LabelMirrorOf labels the comparator's pods with their app: not
	// LabelFlight, which the canary selects on.
	LabelMirrorOf = "fledge.dev/mirror-of"
	// comparatorPort serves the copies; comparatorMetricsPort /metrics.
	comparatorPort        = 8080
	comparatorMetricsPort = 9090
)

// ComparatorDeployment builds the comparator of Deployment d's canary: one
// replica of image in mirror-compare mode, told where the canary and
// stable alone are (on the stable Service's first port) and which workload
// to label its counts with. Its pods have no sidecar (they call both
// Services directly: a sidecar would route those calls by the app's own
// VirtualService, mirror included), and Prometheus is asked to scrape them
// by the usual annotations.
func ComparatorDeployment(d *appsv1.Deployment, stable *corev1.Service, image string, owner metav1.OwnerReference) (*appsv1.Deployment, error) {
	if image == "" {
		// Terminal until fledge is run with one: held, saying so.
		return nil, fmt.Errorf("deployment %s/%s: its policy compares mirrored responses, and fledge runs without a comparator image (--mirror-compare-image): %w", d.Namespace, d.Name, traffic.ErrConflict)
	}
	if len(stable.Spec.Ports) == 0 {
		return nil, fmt.Errorf("service %s/%s has no port for the comparator to call", stable.Namespace, stable.Name)
	}
	port := stable.Spec.Ports[0].Port
	url := func(svc string) string {
		return fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", svc, d.Namespace, port)
	}
	labels := map[string]string{LabelMirrorOf: d.Name}
	out := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + ComparatorSuffix,
			Namespace:       d.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: d.Name},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: labels,
					Annotations: map[string]string{
						"sidecar.istio.io/inject": "false",
						"prometheus.io/scrape":    "true",
						"prometheus.io/port":      fmt.Sprint(comparatorMetricsPort),
						"prometheus.io/path":      "/metrics",
					},
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: ptr.To(false),
					SecurityContext:              &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name:  "comparator",
						Image: image,
						// Exactly these flags: the sandbox's mesh emulator
						// plays this mode from them.
						Args: []string{"mirror-compare",
							"--canary=" + url(d.Name+CanarySuffix),
							"--stable=" + url(d.Name+StableSuffix),
							"--workload=" + d.Name + CanarySuffix,
							"--namespace=" + d.Namespace,
						},
						Ports: []corev1.ContainerPort{
							{Name: "http", ContainerPort: comparatorPort},
							{Name: "metrics", ContainerPort: comparatorMetricsPort},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(comparatorMetricsPort)}}},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	out.Annotations = map[string]string{AnnotationRevision: TemplateHash(out.Spec.Template)}
	return out, nil
}

// ComparatorService builds "<name>-mirror": the stable Service's first
// port, to the comparator's.
func ComparatorService(stable *corev1.Service, comparator *appsv1.Deployment, owner metav1.OwnerReference) *corev1.Service {
	p := stable.Spec.Ports[0]
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            comparator.Name,
			Namespace:       comparator.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: comparator.Labels[LabelFlight]},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: corev1.ServiceSpec{
			Selector: comparator.Spec.Selector.MatchLabels,
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: p.Port, TargetPort: intstr.FromString("http"), AppProtocol: ptr.To("http")}},
			Type:     corev1.ServiceTypeClusterIP,
		},
	}
}

// ensureComparator creates or corrects the comparator's Deployment and
// Service. Names someone else holds are a conflict, and nothing is
// created.
func (x *Executor) ensureComparator(ctx context.Context, s Subject) error {
	d := s.Deployment
	if d == nil {
		return nil
	}
	if s.Stable == nil {
		return fmt.Errorf("stable service %s/%s not found", d.Namespace, s.Target.Stable)
	}
	owner := *metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	want, err := ComparatorDeployment(d, s.Stable, x.ComparatorImage, owner)
	if err != nil {
		return err
	}
	svc := ComparatorService(s.Stable, want, owner)
	if cur, err := x.readService(ctx, svc.Namespace, svc.Name, cachedRead); err == nil && !ownedBy(cur, s.Flight) {
		return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
	}
	// Its revision is its template's: a changed image or argument is an
	// update, an unchanged one no call.
	if err := x.ensureCanaryDeployment(ctx, s, want, want.Annotations[AnnotationRevision]); err != nil {
		return err
	}
	return x.ensureService(ctx, s, svc, func(cur *corev1.Service) error {
		return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
	})
}

// deleteComparator removes the comparator's Deployment and Service if they
// are this Flight's.
func (x *Executor) deleteComparator(ctx context.Context, s Subject) error {
	name := s.Target.Name + ComparatorSuffix
	if err := x.deleteOwned(ctx, s, "deployment", name); err != nil {
		return err
	}
	return x.deleteOwned(ctx, s, "service", name)
}
