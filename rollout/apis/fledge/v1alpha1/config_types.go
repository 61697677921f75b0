package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConfigItem is one ConfigMap or Secret a revision's pods read, and its
// content's hash (never the content: a Secret's stays out of every
// status, log, Event and message).
type ConfigItem struct {
	// Kind is "configmap" or "secret".
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Hash identifies the content (data and binaryData; a Secret's keyed
	// with its UID); fledge's copy of it is named
	// "<deployment>-<name>-<hash>" (owned by the Flight, immutable).
	Hash string `json:"hash"`
}

// ConfigRevision is the config content of one revision fledge keeps pods
// or copies of: stable's, the canary's, the previous revision's.
type ConfigRevision struct {
	Revision string       `json:"revision"`
	Items    []ConfigItem `json:"items,omitempty"`
}

// ConfigStatus is how a Flight tracks the ConfigMaps and Secrets its
// Deployment's pods read (config changes are revisions, canaried like
// template changes).
type ConfigStatus struct {
	// Contents are the content of each revision fledge keeps copies of.
	Contents []ConfigRevision `json:"contents,omitempty"`
	// Seen is the newest content fledge has seen, and SeenAt when it first
	// saw it: the Deployment's pods made before SeenAt may read older
	// content (environment variables are read when a container starts).
	Seen   []ConfigItem `json:"seen,omitempty"`
	SeenAt *metav1.Time `json:"seenAt,omitempty"`
	// Pinned: the content the Deployment's pods read is not stable's (a
	// config change is canaried, or was rolled back and not reverted yet):
	// stable's share is served by "<name>-previous", stable's template on
	// fledge's copies of stable's content, and the Deployment's own pods
	// get no traffic. PinnedSince is when that began.
	Pinned      bool         `json:"pinned,omitempty"`
	PinnedSince *metav1.Time `json:"pinnedSince,omitempty"`
	// Routed: stable's share was set on the pinned pods; it stays there
	// while any of them is available.
	Routed bool `json:"routed,omitempty"`
	// Restarting: the Deployment's pods made before SeenAt are being
	// restarted (by eviction) to read the content they must serve with
	// (after a promotion, or once a rejected change is reverted).
	Restarting bool `json:"restarting,omitempty"`
	// Message says what fledge cannot track (a missing ConfigMap, a Secret
	// it may not read), or how the pinning stands.
	Message string `json:"message,omitempty"`
}
