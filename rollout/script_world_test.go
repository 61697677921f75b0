package rollout

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fledgehq/fledge/traffic"
)

// apply does what the executor and Kubernetes would do with an action.
func (w *world) apply(a Action) {
	switch a := a.(type) {
	case SetWeights:
		w.Weights = a.Weights
	case SetStablePaused:
		// fledge's write, the latest: not someone else's resume.
		w.DeploymentPaused, w.StableResumed = a.Paused, false
	case EnsureCanary:
		// Its template as the revision's again, its pods replaced.
		if w.CanaryChanged != "" {
			w.CanaryChanged, w.CanaryReady = "", false
		}
		n := max(a.Replicas, 1)
		switch {
		case w.CanaryRevision != a.Revision || w.CanaryReplicas == 0:
			w.CanaryRevision, w.CanaryReplicas, w.CanaryReady, w.CanaryAvailable = a.Revision, n, false, 0
		case a.Replicas > 0 && w.CanaryReplicas != n:
			// Resized: its pods come and go as the script says.
			w.CanaryReplicas = n
			w.CanaryAvailable = min(w.CanaryAvailable, n)
			w.CanaryReady = w.CanaryAvailable == n
		}
	case ScaleCanaryDown:
		w.CanaryReplicas, w.CanaryReady, w.CanaryAvailable = 0, false, 0
	case EnsureBaseline:
		if w.BaselineRevision != a.Revision || !w.BaselineExists {
			w.BaselineExists, w.BaselineRevision, w.BaselineReplicas, w.BaselineReady = true, a.Revision, 1, false
		}
	case DeleteBaseline:
		w.BaselineExists, w.BaselineRevision, w.BaselineReplicas, w.BaselineReady = false, "", 0, false
	case EnsureComparator:
		w.ComparatorExists = true
	case DeleteComparator:
		w.ComparatorExists, w.ComparatorReady = false, false
	case ClearAction:
		w.action = nil
	case DeleteCanary:
		w.CanaryRevision, w.CanaryReplicas, w.CanaryReady = "", 0, false
		w.BaselineExists, w.BaselineRevision, w.BaselineReplicas, w.BaselineReady = false, "", 0, false // it goes with the canary
		w.ComparatorExists, w.ComparatorReady = false, false                                            // and so does the comparator
	case ReleaseRouting:
		w.Weights = traffic.Weights{Stable: 100}
	case WriteFlags:
		k := FlagDocKey(a.ConfigMap, a.Key)
		fd := w.flagDocs[k]
		if fd.ResourceVersion != a.ResourceVersion || w.dropWrites {
			return // the compare-and-swap fails, or the update is refused
		}
		if w.written == nil {
			w.written = map[string]string{}
		}
		w.written[k] = a.Doc
		rv, _ := strconv.Atoi(fd.ResourceVersion)
		w.flagDocs[k] = FlagDoc{Doc: a.Doc, ResourceVersion: strconv.Itoa(rv + 1)}
	}
}

func (w *world) set(args []string) error {
	for _, kv := range args {
		k, v, _ := strings.Cut(kv, "=")
		b := v == "" || v == "true"
		switch k {
		case "desired":
			w.DesiredRevision = v
		case "deployment":
			w.DeploymentRevision = v
		case "settled":
			w.DeploymentSettled = b
		case "resumed":
			// Someone else resumes the Deployment.
			w.DeploymentPaused, w.StableResumed = false, true
		case "paused":
			// A read of the Deployment that trails fledge's last write of
			// spec.paused (not someone else's resume).
			w.DeploymentPaused, w.StableResumed = b, false
		case "mixed":
			w.DeploymentMixed = b
		case "off-template":
			w.DeploymentOffTemplate = b
		case "current":
			w.DeploymentCurrent = b
		case "canary-ready":
			w.CanaryReady = b
			if b {
				w.CanaryAvailable = w.CanaryReplicas
			}
		case "canary-available":
			n, _ := strconv.Atoi(v)
			w.CanaryAvailable = int32(n)
			w.CanaryReady = w.CanaryAvailable >= w.CanaryReplicas
		case "hpa":
			// An autoscaler on the Deployment, its maxReplicas, and the
			// replicas it gives the Deployment.
			w.Autoscaler = ""
			if v != "" {
				w.Autoscaler = "HorizontalPodAutoscaler " + v
			}
		case "hpa-max":
			n, _ := strconv.Atoi(v)
			w.AutoscalerMax = int32(n)
		case "stable-replicas":
			n, _ := strconv.Atoi(v)
			w.StableReplicas = int32(n)
		case "canary-changed":
			// Someone changed the canary's Deployment (fledge's): how.
			w.CanaryChanged = strings.ReplaceAll(v, "_", " ")
			if w.CanaryChanged != "" {
				w.CanaryReady, w.CanaryAvailable = false, 0 // as the engine observes it
			}
		case "foreign-hpa":
			w.ForeignAutoscaler = strings.ReplaceAll(v, "_", " ")
		case "baseline-ready":
			w.BaselineReady = b && w.BaselineExists
			w.BaselineAvailable = 0
			if w.BaselineReady {
				w.BaselineAvailable = w.BaselineReplicas
			}
		case "comparator-ready":
			w.ComparatorReady = b && w.ComparatorExists
		case "baseline-trouble":
			w.BaselineTrouble = strings.ReplaceAll(v, "_", " ")
		case "routing-error":
			w.RoutingError = strings.ReplaceAll(v, "_", " ")
		case "opted-out":
			w.OptedOut = b
		case "weights":
			s, c, _ := strings.Cut(v, "/")
			ws, _ := strconv.Atoi(s)
			wc, _ := strconv.Atoi(c)
			w.Weights = traffic.Weights{Stable: int32(ws), Canary: int32(wc)}
		default:
			return fmt.Errorf("unknown world key %q", k)
		}
	}
	return nil
}
