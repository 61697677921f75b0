package engine

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

// heldRouter hangs every call about the target named stuck until release
// is closed, as a look held up by a slow API server would.
type heldRouter struct {
	*traffictest.Router
	stuck   string
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (r *heldRouter) wait(ctx context.Context, t traffic.Target) {
	if t.Name != r.stuck {
		return
	}
	r.once.Do(func() { close(r.entered) })
	select {
	case <-r.release:
	case <-ctx.Done():
	}
}

func (r *heldRouter) Weights(ctx context.Context, t traffic.Target) (traffic.Weights, error) {
	r.wait(ctx, t)
	return r.Router.Weights(ctx, t)
}

func (r *heldRouter) Ensure(ctx context.Context, t traffic.Target) error {
	r.wait(ctx, t)
	return r.Router.Ensure(ctx, t)
}

// An opted-in Deployment is taken over, and paused, at once even while
// every worker of the Flights' queue is busy: adoptions have a lane of
// their own. (With one queue and its one worker held up, it would wait.)
func TestAnOptInIsPausedWhileEveryFlightWorkerIsBusy(t *testing.T) {
	app := func(name string, uid string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: k8stypes.UID(uid), Annotations: map[string]string{rollout.AnnotationRollout: "standard"}},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: name + ":v1"}}}}},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1},
		}
	}
	busy := app("busy", "u-busy")
	flight := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "busy", Namespace: "shop",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(busy, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseIdle}} // taken over long ago
	kube := fake.NewClientset(busy, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "busy", Namespace: "shop"}})
	ps, err := rollout.ParseConfig([]byte(faultPolicies))
	if err != nil {
		t.Fatal(err)
	}
	router := &heldRouter{Router: traffictest.NewRouter(), stuck: "busy", entered: make(chan struct{}), release: make(chan struct{})}
	defer close(router.release)
	metrics := NewMetrics(prometheus.NewRegistry())
	c := NewController(ControllerConfig{Kube: kube, Fledge: fledgefake.NewSimpleClientset(flight), Router: router, Policies: policyMap(ps),
		Namespaces: []string{"shop"}, Logger: slog.New(slog.DiscardHandler), Metrics: metrics})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = c.Run(ctx, 1) }()
	select {
	case <-router.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the Flights' worker never looked at busy")
	}

	// Its only worker is held up; a team opts a new Deployment in.
	if _, err := kube.AppsV1().Deployments("shop").Create(ctx, app("fresh", "u-fresh"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "fresh", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments("shop").Get(ctx, "fresh", metav1.GetOptions{})
		return err == nil && d.Spec.Paused, nil
	})
	if err != nil {
		t.Fatal("the new Deployment was not paused while the Flights' worker was busy")
	}
	// And the whole take-over, up to Idle, stays in that lane.
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		f, err := c.flights.Flights("shop").Get(ctx, "fresh", metav1.GetOptions{})
		return err == nil && f.Status.Phase == v1alpha1.PhaseIdle, nil
	})
	if err != nil {
		t.Fatal("the new Deployment was not taken over (Idle) while the Flights' worker was busy")
	}
	// The queues' metrics say which lane it went through.
	if n := testutil.ToFloat64(metrics.latency.adds.WithLabelValues("adoptions")); n < 1 {
		t.Errorf("fledge_workqueue_adds_total{name=adoptions} = %v, want the new Deployment counted", n)
	}
}
