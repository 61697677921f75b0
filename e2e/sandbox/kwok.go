package sandbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// kwokAnnotation marks the nodes kwok manages; only ours carry it.
const kwokAnnotation = "kwok.x-k8s.io/node"

// startKwok runs kwok, which plays the kubelet for fake nodes (heartbeats,
// pods Running and Ready), creates the nodes and waits until all are Ready.
func (s *Sandbox) startKwok(ctx context.Context, nodes int) error {
	p, err := s.launch("kwok", s.tools.Kwok,
		"--kubeconfig="+s.Kubeconfig,
		"--config="+strings.Join(s.tools.KwokStages, ","),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokAnnotation+"=fake",
		fmt.Sprintf("--server-address=127.0.0.1:%d", s.ports.kwok),
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
	)
	if err != nil {
		return err
	}
	for i := range nodes {
		if err := s.createNode(ctx, fmt.Sprintf("kwok-node-%d", i)); err != nil {
			return err
		}
	}
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := p.errIfExited(); err != nil {
			return false, err
		}
		list, err := s.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= nodes, nil
	})
	if err != nil {
		if exitErr := p.errIfExited(); exitErr != nil {
			return exitErr
		}
		return fmt.Errorf("kwok nodes not Ready: %w; last lines of %s:\n%s", err, p.logPath, tail(p.logPath, 15))
	}
	return nil
}

func (s *Sandbox) createNode(ctx context.Context, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		// Room for make bench-scale's thousands of apps and their
		// canaries: at 250 a node, 3 nodes held 750 pods and the rest
		// stayed Pending.
		corev1.ResourcePods: resource.MustParse("5000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokAnnotation: "fake"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if _, err := s.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}
