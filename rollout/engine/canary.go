package engine

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

const (
	// LabelManagedBy marks what fledge created.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "fledge"
	// LabelFlight ties a canary's objects to their Flight.
	LabelFlight = "fledge.dev/flight"
	// AnnotationRevision records on the canary which revision of the
	// Deployment's template it runs.
	AnnotationRevision = "fledge.dev/revision"
	// CanarySuffix names the canary Deployment and Service.
	CanarySuffix = "-canary"
	// BaselineSuffix names the fresh baseline's Deployment and Service
	// (policy baseline: fresh).
	BaselineSuffix = "-baseline"
	// PreviousSuffix names the previous revision's Deployment and Service
	// kept through the watch after a promotion (policy postPromotion).
	PreviousSuffix = "-previous"
	// StableSuffix names the Service that reaches stable's pods alone,
	// for load tests that load stable directly (see StableService).
	StableSuffix = "-stable"
)

// TemplateHash identifies a revision of a pod template: the same for a
// Deployment's spec.template and the template of the ReplicaSet made from
// it (whose pod-template-hash label is left out).
func TemplateHash(t corev1.PodTemplateSpec) string {
	t = *t.DeepCopy()
	delete(t.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	// encoding/json sorts map keys: the bytes are a function of the value.
	b, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("pod template does not marshal: %v", err)) // every API type marshals
	}
	h := fnv.New64a()
	h.Write(b)
	return rand.SafeEncodeString(strconv.FormatUint(h.Sum64(), 16))[:10]
}

// deploymentRevision is where Kubernetes' Deployment controller writes a
// ReplicaSet's revision, and on the Deployment its newest ReplicaSet's.
const deploymentRevision = "deployment.kubernetes.io/revision"

// NewestReplicaSet returns the ReplicaSet of a Deployment with the highest
// revision, from its ReplicaSets (any order), or nil.
func NewestReplicaSet(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	var newest *appsv1.ReplicaSet
	best := int64(-1)
	for _, rs := range sets {
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		rev, err := strconv.ParseInt(rs.Annotations[deploymentRevision], 10, 64)
		if err != nil {
			continue
		}
		if rev > best {
			newest, best = rs, rev
		}
	}
	return newest
}

// DeploymentSettled reports whether the Deployment's controller has seen
// its spec and all replicas run its newest template and are available.
func DeploymentSettled(d *appsv1.Deployment) bool {
	return d.Status.ObservedGeneration >= d.Generation && replicasSettled(d)
}

// deploymentTrouble is what a Deployment's conditions say keeps its pods
// from coming up: a ReplicaFailure (pods refused: a quota exceeded, a
// policy's admission), or its progress deadline exceeded. Empty when they
// say nothing of the kind, or describe an older generation.
func deploymentTrouble(d *appsv1.Deployment) string {
	if d.Status.ObservedGeneration < d.Generation {
		return ""
	}
	for _, c := range d.Status.Conditions {
		switch {
		case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue:
			return fmt.Sprintf("%s: %s", c.Reason, bounded(c.Message))
		case c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded":
			return fmt.Sprintf("%s: %s", c.Reason, bounded(c.Message))
		}
	}
	return ""
}

// bounded cuts a message from the cluster to a length fit for a status.
func bounded(s string) string {
	const most = 300
	if r := []rune(s); len(r) > most {
		return string(r[:most]) + "…"
	}
	return s
}

// replicasSettled reports whether the Deployment's status counts all its
// replicas updated and available, and no more.
func replicasSettled(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want
}

// canaryLabels are the canary pods' labels: the template's, with every key
// a stable Service selects on given the value "<value>-canary", so that
// the user's Services never send traffic to the canary behind fledge's back.
func canaryLabels(template map[string]string, stableSelector map[string]string, flight string) map[string]string {
	return relabel(template, stableSelector, flight, CanarySuffix)
}

// relabel gives every key of the template's labels a stable Service
// selects on the value "<value><suffix>", and ties the pods to their
// Flight.
func relabel(template map[string]string, stableSelector map[string]string, flight, suffix string) map[string]string {
	out := make(map[string]string, len(template)+1)
	for k, v := range template {
		out[k] = v
	}
	for k := range stableSelector {
		if v, ok := out[k]; ok {
			out[k] = suffixed(v, suffix)
		}
	}
	delete(out, appsv1.DefaultDeploymentUniqueLabelKey)
	out[LabelFlight] = flight
	return out
}

func canaryValue(v string) string { return suffixed(v, CanarySuffix) }

// suffixed is v with suffix, within a label value's 63 characters.
func suffixed(v, suffix string) string {
	const max = 63
	s := v + suffix
	if len(s) > max {
		s = v[:max-len(suffix)] + suffix
	}
	return s
}

// CanaryDeployment builds the "<name>-canary" Deployment running the
// user's current template, relabelled away from the stable Service.
// stableSelector is the selector of the Service the stable workload is
// reached through.
func CanaryDeployment(d *appsv1.Deployment, stableSelector map[string]string, revision string, owner metav1.OwnerReference) *appsv1.Deployment {
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels = canaryLabels(tmpl.Labels, stableSelector, d.Name)
	selector := map[string]string{LabelFlight: d.Name}
	for k := range stableSelector {
		if v, ok := tmpl.Labels[k]; ok {
			selector[k] = v
		}
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil && *d.Spec.Replicas > 0 {
		// All traffic goes to the canary while stable updates: size it
		// like stable.
		replicas = *d.Spec.Replicas
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + CanarySuffix,
			Namespace:       d.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: d.Name},
			Annotations:     map[string]string{AnnotationRevision: revision},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:                ptr.To(replicas),
			Selector:                &metav1.LabelSelector{MatchLabels: selector},
			Template:                tmpl,
			Strategy:                d.Spec.Strategy,
			MinReadySeconds:         d.Spec.MinReadySeconds,
			ProgressDeadlineSeconds: d.Spec.ProgressDeadlineSeconds,
		},
	}
}

// BaselineDeployment builds the fresh baseline, "<name>-baseline": stable's
// pod template (that of the Deployment's ReplicaSet of the stable
// revision), relabelled away from the stable Service and from the canary,
// at the canary's size. It reports an error, and builds nothing, when no
// label the stable Service selects on is in the template: the baseline's
// pods could not then be told from the canary's.
func BaselineDeployment(d *appsv1.Deployment, stable corev1.PodTemplateSpec, stableSelector map[string]string, revision string, owner metav1.OwnerReference) (*appsv1.Deployment, error) {
	return revisionCopy(d, stable, stableSelector, revision, owner, BaselineSuffix)
}

// revisionCopy builds "<name><suffix>", a Deployment of one of the
// Deployment's earlier templates (a fresh baseline of stable's, or the
// previous revision's kept through a watch), relabelled with suffix away
// from the stable Service and from the canary, at the canary's size.
func revisionCopy(d *appsv1.Deployment, stable corev1.PodTemplateSpec, stableSelector map[string]string, revision string, owner metav1.OwnerReference, suffix string) (*appsv1.Deployment, error) {
	tmpl := *stable.DeepCopy()
	tmpl.Labels = relabel(tmpl.Labels, stableSelector, d.Name, suffix)
	selector := map[string]string{LabelFlight: d.Name}
	for k := range stableSelector {
		if v, ok := tmpl.Labels[k]; ok {
			selector[k] = v
		}
	}
	if len(selector) == 1 {
		return nil, fmt.Errorf("deployment %s/%s: no label of stable's pod template is one its Service selects on, so its pods could not be told from the canary's: no copy of revision %s is started", d.Namespace, d.Name, revision)
	}
	canary := CanaryDeployment(d, stableSelector, revision, owner)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + suffix,
			Namespace:       d.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: d.Name},
			Annotations:     map[string]string{AnnotationRevision: revision},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:                canary.Spec.Replicas,
			Selector:                &metav1.LabelSelector{MatchLabels: selector},
			Template:                tmpl,
			Strategy:                d.Spec.Strategy,
			MinReadySeconds:         d.Spec.MinReadySeconds,
			ProgressDeadlineSeconds: d.Spec.ProgressDeadlineSeconds,
		},
	}, nil
}

// CanaryService builds the "<name>-canary" Service, with the stable
// Service's ports, selecting the canary pods.
func CanaryService(stable *corev1.Service, canary *appsv1.Deployment, owner metav1.OwnerReference) *corev1.Service {
	ports := make([]corev1.ServicePort, len(stable.Spec.Ports))
	for i, p := range stable.Spec.Ports {
		ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort, AppProtocol: p.AppProtocol}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            canary.Name,
			Namespace:       canary.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: canary.Labels[LabelFlight]},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: corev1.ServiceSpec{Selector: canary.Spec.Selector.MatchLabels, Ports: ports, Type: corev1.ServiceTypeClusterIP},
	}
}

// StableService builds the "<name>-stable" Service: the user's Service's
// ports and exactly its selector, so it reaches the stable pods and no
// canary pod (whose labels CanaryDeployment moves away from that
// selector). Unlike the app's host, which the mesh splits by weight, it
// has no VirtualService in front of it: a load test sent to it loads
// stable alone, as one sent to "<name>-canary" loads the canary alone.
// fledge creates it only for policies whose load tests ask for it
// (rollout.Policy.NeedsStableService).
func StableService(stable *corev1.Service, flight string, owner metav1.OwnerReference) *corev1.Service {
	ports := make([]corev1.ServicePort, len(stable.Spec.Ports))
	for i, p := range stable.Spec.Ports {
		ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort, AppProtocol: p.AppProtocol}
	}
	selector := make(map[string]string, len(stable.Spec.Selector))
	for k, v := range stable.Spec.Selector {
		selector[k] = v
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            flight + StableSuffix,
			Namespace:       stable.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: flight},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: ports, Type: corev1.ServiceTypeClusterIP},
	}
}

// Images lists a pod template's images: its containers in order, then its
// init containers.
func Images(t corev1.PodTemplateSpec) []v1alpha1.ContainerImage {
	out := make([]v1alpha1.ContainerImage, 0, len(t.Spec.Containers)+len(t.Spec.InitContainers))
	for _, c := range t.Spec.Containers {
		out = append(out, v1alpha1.ContainerImage{Container: c.Name, Image: c.Image})
	}
	for _, c := range t.Spec.InitContainers {
		out = append(out, v1alpha1.ContainerImage{Container: c.Name, Image: c.Image, Init: true})
	}
	return out
}
