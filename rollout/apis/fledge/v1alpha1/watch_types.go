package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis/sequential"
)

// WatchState is where a watch after a promotion stands.
type WatchState string

const (
	// WatchPreparing: the promotion is under way, and the previous
	// revision's pods ("<name>-previous") start beside it.
	WatchPreparing WatchState = "Preparing"
	// WatchWatching: the promoted revision serves everyone and is judged
	// against the previous revision's figures and the policy's bounds;
	// the previous revision's pods wait, ready, without traffic.
	WatchWatching WatchState = "Watching"
	// WatchPassed: the watch lasted its duration without a regression;
	// the previous revision's pods are removed.
	WatchPassed WatchState = "Passed"
	// WatchEnded: the watch ended early (a new revision, or nothing to
	// judge): Message says why; the previous revision's pods are removed.
	WatchEnded WatchState = "Ended"
	// WatchReverted: the watch found a regression: all traffic is on the
	// previous revision's pods, and stays there until the Deployment's
	// template changes (a revert, or a fix, canaried against them).
	WatchReverted WatchState = "Reverted"
	// WatchRestoring: the template went back to the previous revision:
	// the Deployment rolls to it while the previous revision's pods serve.
	WatchRestoring WatchState = "Restoring"
)

// Watch is the watch after a promotion.
type Watch struct {
	// Revision is the promoted revision under watch; Previous the one it
	// replaced, whose pods fledge keeps running until the watch ends.
	Revision string     `json:"revision"`
	Previous string     `json:"previous"`
	State    WatchState `json:"state"`
	// Since and Until bound the watching (set when it begins).
	Since *metav1.Time `json:"since,omitempty"`
	Until *metav1.Time `json:"until,omitempty"`
	// Figures are each comparison's counts: the previous revision's over
	// the rollout, and the promoted revision's since the watch began.
	Figures []WatchFigure `json:"figures,omitempty"`
	// LastLookAt and LastAnalysisAt are when the comparisons' counters
	// and the threshold checks were last read.
	LastLookAt     *metav1.Time `json:"lastLookAt,omitempty"`
	LastAnalysisAt *metav1.Time `json:"lastAnalysisAt,omitempty"`
	// FailedChecks counts the threshold checks the promoted revision
	// failed in the watch.
	FailedChecks int32 `json:"failedChecks,omitempty"`
	// Window numbers the watch's windows (one interval each, from 1) and
	// WindowStart is when the current one began: each comparison is also
	// judged on the current window's counts alone, so that a regression
	// that starts late is not diluted by the healthy time before it.
	Window      int32        `json:"window,omitempty"`
	WindowStart *metav1.Time `json:"windowStart,omitempty"`
	// Message says why the watch reverted or ended, or how it stands.
	Message string `json:"message,omitempty"`
	// Replicas is the previous revision's pods' size: enough for all of
	// the traffic (0: the Deployment's replicas).
	Replicas int32 `json:"replicas,omitempty"`
	// Routed: the revert's routing to the previous revision's pods was
	// set; it stays while any of them is available.
	Routed bool `json:"routed,omitempty"`
	// PreviousImages are the previous revision's images, for people.
	PreviousImages []ContainerImage `json:"previousImages,omitempty"`
}

// WatchFigure is one comparison's counts in a watch.
type WatchFigure struct {
	Metric string `json:"metric"`
	// Before is the previous revision's requests and bad ones as stable
	// served them during the rollout (the comparison's stable side).
	Before sequential.Counts `json:"before"`
	// After is the promoted revision's since the watch's first look, and
	// Last its cumulative counters at the last look (nil before it).
	After sequential.Counts  `json:"after"`
	Last  *sequential.Counts `json:"last,omitempty"`
	// Recent is the promoted revision's counts in the current window.
	Recent sequential.Counts `json:"recent"`
}
