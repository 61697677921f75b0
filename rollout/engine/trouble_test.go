package engine

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestDeploymentTroubleReadsWhatKeepsPodsFromComingUp(t *testing.T) {
	quota := appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
		Message: `pods "shop-canary-1" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3`}
	stuck := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "shop-canary-1" has timed out progressing.`}
	progressing := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated"}
	for _, tc := range []struct {
		name       string
		conditions []appsv1.DeploymentCondition
		stale      bool
		want       string
	}{
		{"a quota refuses pods", []appsv1.DeploymentCondition{progressing, quota}, false, "FailedCreate: pods \"shop-canary-1\" is forbidden: exceeded quota"},
		{"the progress deadline passed", []appsv1.DeploymentCondition{stuck}, false, "ProgressDeadlineExceeded: ReplicaSet"},
		{"still progressing", []appsv1.DeploymentCondition{progressing}, false, ""},
		{"conditions of an older generation", []appsv1.DeploymentCondition{quota}, true, ""},
		{"a long message is cut", []appsv1.DeploymentCondition{{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: strings.Repeat("x", 5000)}}, false, "FailedCreate: xxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &appsv1.Deployment{}
			d.Generation, d.Status.ObservedGeneration, d.Status.Conditions = 2, 2, tc.conditions
			if tc.stale {
				d.Status.ObservedGeneration = 1
			}
			got := deploymentTrouble(d)
			if tc.want == "" && got != "" || tc.want != "" && !strings.HasPrefix(got, tc.want) {
				t.Errorf("deploymentTrouble = %q, want %q", got, tc.want)
			}
			if n := len([]rune(got)); n > 330 {
				t.Errorf("%d characters, want it bounded", n)
			}
		})
	}
}
