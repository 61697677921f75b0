package mesh

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels Istio reads to name workloads in telemetry.
const (
	labelTemplateHash      = "pod-template-hash"
	labelApp               = "app"
	labelVersion           = "version"
	labelK8sName           = "app.kubernetes.io/name"
	labelK8sVersion        = "app.kubernetes.io/version"
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
)

// podInfo is what routing and telemetry need of a ready pod, derived once
// per table build.
type podInfo struct {
	name      string
	namespace string
	labels    map[string]string // shared with the informer cache; read only
	rev       Revision
	behaviour behaviour
	peer      peerLabels
	// flag is the release flag the pod evaluates per request, nil if none.
	flag *podFlag
	// comparator is set when the pod runs fledge's response comparator
	// rather than an app (see comparator.go).
	comparator *comparator
	// started is when the pod was created: its age degrades it (see
	// behaviour.errorRateAt).
	started time.Time
	// configs are its views of the ConfigMaps and Secrets it references,
	// each counting the requests the pod serves (see config.go).
	configs []configUse
}

// peerLabels are the values of the workload half of Istio's standard
// metric labels, for either end of a request.
type peerLabels struct {
	workload, namespace, principal, app, version string
	canonicalService, canonicalRevision          string
}

func newPodInfo(pod *corev1.Pod, b behaviour) *podInfo {
	workload := workloadName(pod)
	var flag *podFlag
	if b.flag != nil {
		flag = &podFlag{
			spec:   b.flag,
			source: flagSourceRef{namespace: pod.Namespace, configMap: b.flag.configMap, key: b.flag.key},
		}
	}
	return &podInfo{
		name:      pod.Name,
		namespace: pod.Namespace,
		labels:    pod.Labels,
		rev: Revision{
			Namespace:    pod.Namespace,
			Workload:     workload,
			TemplateHash: pod.Labels[labelTemplateHash],
		},
		behaviour: b,
		peer:      newPeerLabels(workload, pod.Namespace, pod.Spec.ServiceAccountName, pod.Labels),
		flag:      flag,
		started:   pod.CreationTimestamp.Time,
	}
}

func newPeerLabels(workload, namespace, serviceAccount string, podLabels map[string]string) peerLabels {
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	return peerLabels{
		workload:          workload,
		namespace:         namespace,
		principal:         "spiffe://cluster.local/ns/" + namespace + "/sa/" + serviceAccount,
		app:               firstLabel(podLabels, "unknown", labelApp),
		version:           firstLabel(podLabels, "unknown", labelVersion),
		canonicalService:  firstLabel(podLabels, workload, labelCanonicalName, labelK8sName, labelApp),
		canonicalRevision: firstLabel(podLabels, "latest", labelCanonicalRevision, labelK8sVersion, labelVersion),
	}
}

// firstLabel returns the value of the first of keys that is set, else def.
func firstLabel(podLabels map[string]string, def string, keys ...string) string {
	for _, k := range keys {
		if v := podLabels[k]; v != "" {
			return v
		}
	}
	return def
}

// workloadName derives the workload a pod belongs to as Istio does for
// telemetry: a pod of a Deployment's ReplicaSet "<deployment>-<hash>" is
// the Deployment's; a pod with another controller is that controller's; a
// bare pod is its own workload.
func workloadName(pod *corev1.Pod) string {
	owner := metav1.GetControllerOf(pod)
	if owner == nil && len(pod.OwnerReferences) > 0 {
		owner = &pod.OwnerReferences[0]
	}
	if owner == nil {
		return pod.Name
	}
	if owner.Kind == "ReplicaSet" {
		if hash := pod.Labels[labelTemplateHash]; hash != "" {
			if deployment, ok := strings.CutSuffix(owner.Name, "-"+hash); ok && deployment != "" {
				return deployment
			}
		}
	}
	return owner.Name
}
