package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// LeaderLabel is the label fledge keeps on its own pod: "true" on the
// leader's, "false" on the others'. The API's Service selects it, so that
// a pipeline's call reaches the leader, which alone may act: through a
// Service over every replica, a call (and every retry on the same
// connection) may land on a follower, which can only refuse it.
const LeaderLabel = "fledge.dev/leader"

// leaderLabelTimeout bounds one labelling, retries included.
const leaderLabelTimeout = 15 * time.Second

// podLabel labels this replica's pod. Zero (not in a pod: no POD_NAME or
// POD_NAMESPACE) labels nothing.
type podLabel struct {
	kube     kubernetes.Interface
	ns, name string
	log      *slog.Logger
}

// set labels the pod leading or not, retrying a failed patch for up to
// leaderLabelTimeout. A pod that cannot be labelled (no permission, gone)
// is logged: the API's Service then reaches this replica only by its old
// label, and fledgectl retries a refused call on a new connection.
func (p podLabel) set(ctx context.Context, leading bool) error {
	if p.kube == nil || p.ns == "" || p.name == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, leaderLabelTimeout)
	defer cancel()
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, LeaderLabel, strconv.FormatBool(leading))
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 6, Cap: 5 * time.Second}, func(ctx context.Context) (bool, error) {
		_, last = p.kube.CoreV1().Pods(p.ns).Patch(ctx, p.name, types.MergePatchType, patch, metav1.PatchOptions{})
		switch {
		case last == nil:
			return true, nil
		case apierrors.IsNotFound(last), apierrors.IsForbidden(last):
			return false, last // will not mend by retrying
		}
		return false, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		p.log.Warn("cannot label this replica's pod "+LeaderLabel+"="+strconv.FormatBool(leading)+
			": the API's Service selects the leader by it (RBAC: patch pods in fledge's namespace)",
			"pod", p.ns+"/"+p.name, "err", last)
		return last
	}
	p.log.Debug("pod labelled", "pod", p.ns+"/"+p.name, "label", LeaderLabel, "value", leading)
	return nil
}
