package mesh

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestWorkloadName(t *testing.T) {
	owned := func(kind, name string, controller bool) []func(*corev1.Pod) {
		return []func(*corev1.Pod){func(p *corev1.Pod) {
			p.OwnerReferences[0].Kind, p.OwnerReferences[0].Name = kind, name
			*p.OwnerReferences[0].Controller = controller
		}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"a Deployment's pod belongs to the Deployment", deploymentPod("ns", "web", "5d8f", 0, nil), "web"},
		{"a ReplicaSet not named after the hash is the workload", deploymentPod("ns", "web", "5d8f", 0, nil, owned("ReplicaSet", "web-manual", true)...), "web-manual"},
		{"a StatefulSet's pod belongs to the StatefulSet", deploymentPod("ns", "db", "", 0, nil, owned("StatefulSet", "db", true)...), "db"},
		{"an owner that is not a controller still names the workload", deploymentPod("ns", "job", "", 0, nil, owned("Job", "nightly", false)...), "nightly"},
		{"a bare pod is its own workload", func() *corev1.Pod {
			p := deploymentPod("ns", "debug", "x", 0, nil)
			p.OwnerReferences = nil
			return p
		}(), "debug-x-00000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := workloadName(tt.pod); got != tt.want {
				t.Errorf("workloadName = %q, want %q", got, tt.want)
			}
		})
	}
}
