package mesh

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This file plays the kubelet's part, and the app's, in a pod's
// configuration: which ConfigMaps and Secrets a pod references, which
// version of each it sees (chosen from the history kubelet.go records),
// and what their sandbox.fledge.dev.<aspect> keys make of its behaviour.
// All of it is computed when the routing table is built; a request only
// adds to counters the build prepared.

// configKeyPrefix marks the data keys that set an aspect of a pod's
// behaviour: sandbox.fledge.dev.<aspect> does what the annotation
// sandbox.fledge.dev/<aspect> does (a data key cannot hold a slash).
const configKeyPrefix = "sandbox.fledge.dev."

// Kinds of the objects a pod's configuration comes from, as Problems name
// them, and as objectRef and ConfigUse.Object spell them.
const (
	kindConfigMap = "ConfigMap"
	kindSecret    = "Secret"
	refConfigMap  = "configmap"
	refSecret     = "secret"
)

// ConfigUse is the ground truth of one pod's view of one ConfigMap or
// Secret it references: how many requests the pod served while the
// content it saw of the object had hash Hash.
type ConfigUse struct {
	// Workload is the pod's workload as Istio names it (see Revision).
	Workload string
	Pod      string
	// Object is "configmap/<name>" or "secret/<name>", in the pod's
	// namespace.
	Object string
	// Hash is ConfigDataHash of the content the pod saw, "" while it saw
	// no object (never created, or deleted).
	Hash string
	// Requests counts the requests the pod answered, whatever the status,
	// mirrored copies included.
	Requests int64
}

// ConfigDataHash identifies the content of a ConfigMap (its data and
// binaryData) or of a Secret (its data, passed as binaryData with nil
// data): the first 12 hex digits of a SHA-256 over the keys in sorted
// order, each with its value. A value hashes alike from either map.
func ConfigDataHash(data map[string]string, binaryData map[string][]byte) string {
	type entry struct{ key, value string }
	entries := make([]entry, 0, len(data)+len(binaryData))
	for k, v := range data {
		entries = append(entries, entry{k, v})
	}
	for k, v := range binaryData {
		entries = append(entries, entry{k, string(v)})
	}
	slices.SortFunc(entries, func(x, y entry) int {
		return cmp.Or(strings.Compare(x.key, y.key), strings.Compare(x.value, y.value))
	})
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, e := range entries {
		// Lengths first, so that {"a": "bc"} and {"ab": "c"} differ.
		h.Write(binary.AppendUvarint(n[:0], uint64(len(e.key))))
		h.Write([]byte(e.key))
		h.Write(binary.AppendUvarint(n[:0], uint64(len(e.value))))
		h.Write([]byte(e.value))
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// configVersion is an object's content as the informer delivered it at
// one time. Only what a pod's behaviour reads is kept, besides the hash:
// flag documents and the like are not copied into the history.
type configVersion struct {
	// observed is when the emulator saw it; the zero time for what the
	// informer's initial list held, which was there before anything the
	// emulator saw afterwards.
	observed time.Time
	// hash is ConfigDataHash of the content, "" when the object is
	// missing.
	hash string
	// keys are its sandbox.fledge.dev.<aspect> keys, sorted.
	keys []configKey
}

// configKey is one data key that sets an aspect of a behaviour.
type configKey struct {
	field string // "data" or "binaryData", as the Problem's field names it
	key   string
	value string
}

func configMapVersion(cm *corev1.ConfigMap) configVersion {
	v := configVersion{hash: ConfigDataHash(cm.Data, cm.BinaryData)}
	for k, value := range cm.Data {
		if strings.HasPrefix(k, configKeyPrefix) {
			v.keys = append(v.keys, configKey{"data", k, value})
		}
	}
	for k, value := range cm.BinaryData {
		if strings.HasPrefix(k, configKeyPrefix) {
			v.keys = append(v.keys, configKey{"binaryData", k, string(value)})
		}
	}
	slices.SortFunc(v.keys, func(x, y configKey) int { return strings.Compare(x.key, y.key) })
	return v
}

// secretVersion reads a Secret's data. stringData is write-only: an API
// server folds it into data and never returns it, but a fake clientset
// keeps it, so it is folded in here as the API server would.
func secretVersion(s *corev1.Secret) configVersion {
	data := s.Data
	if len(s.StringData) > 0 {
		data = maps.Clone(data)
		if data == nil {
			data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			data[k] = []byte(v)
		}
	}
	v := configVersion{hash: ConfigDataHash(nil, data)}
	for k, value := range data {
		if strings.HasPrefix(k, configKeyPrefix) {
			v.keys = append(v.keys, configKey{"data", k, string(value)})
		}
	}
	slices.SortFunc(v.keys, func(x, y configKey) int { return strings.Compare(x.key, y.key) })
	return v
}

// viewAt returns the newest version observed at or before at, nil when
// there is none (the object was missing then). history is in the order
// observed.
func viewAt(history []configVersion, at time.Time) *configVersion {
	i := sort.Search(len(history), func(i int) bool { return history[i].observed.After(at) })
	if i == 0 {
		return nil
	}
	return &history[i-1]
}

// nextAfter returns the first version observed after at, nil when there
// is none.
func nextAfter(history []configVersion, at time.Time) *configVersion {
	i := sort.Search(len(history), func(i int) bool { return history[i].observed.After(at) })
	if i == len(history) {
		return nil
	}
	return &history[i]
}

// podConfigRef is one object a pod references.
type podConfigRef struct {
	obj objectRef
	// live is true when a container mounts it as a volume without
	// subPath: the kubelet rewrites such files when the object changes.
	// Environment variables and subPath mounts are set once, when the
	// container starts.
	live bool
}

// viewTime is the instant whose content the pod sees: what was there at
// its start or, for a live reference, what the kubelet has synced since.
func (r podConfigRef) viewTime(start, now time.Time, kubeletSync time.Duration) time.Time {
	if r.live {
		if synced := now.Add(-kubeletSync); synced.After(start) {
			return synced
		}
	}
	return start
}

// podConfigRefs returns the ConfigMaps and Secrets a pod references, each
// once, in the order their keys apply to its behaviour (later ones win):
// those referenced by volumes, by name, then those referenced by
// environment variables (env and envFrom, of init and app containers), by
// name. An object referenced both ways takes its place among the
// environment's, and is live if any volume mounts it live.
func podConfigRefs(pod *corev1.Pod) []podConfigRef {
	if len(pod.Spec.Volumes) == 0 && !hasEnvRefs(pod.Spec.InitContainers) && !hasEnvRefs(pod.Spec.Containers) {
		return nil
	}
	live := map[objectRef]bool{}
	var volumes, env []objectRef
	addVolume := func(kind, name string, mountedLive bool) {
		if name == "" {
			return
		}
		ref := objectRef{kind, pod.Namespace, name}
		if _, seen := live[ref]; !seen {
			volumes = append(volumes, ref)
		}
		live[ref] = live[ref] || mountedLive
	}
	for _, v := range pod.Spec.Volumes {
		l := mountedLive(pod, v.Name)
		switch {
		case v.ConfigMap != nil:
			addVolume(refConfigMap, v.ConfigMap.Name, l)
		case v.Secret != nil:
			addVolume(refSecret, v.Secret.SecretName, l)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					addVolume(refConfigMap, s.ConfigMap.Name, l)
				}
				if s.Secret != nil {
					addVolume(refSecret, s.Secret.Name, l)
				}
			}
		}
	}
	inEnv := map[objectRef]bool{}
	addEnv := func(kind, name string) {
		ref := objectRef{kind, pod.Namespace, name}
		if name != "" && !inEnv[ref] {
			inEnv[ref] = true
			env = append(env, ref)
		}
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil {
					addEnv(refConfigMap, from.ConfigMapRef.Name)
				}
				if from.SecretRef != nil {
					addEnv(refSecret, from.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if e.ValueFrom.ConfigMapKeyRef != nil {
					addEnv(refConfigMap, e.ValueFrom.ConfigMapKeyRef.Name)
				}
				if e.ValueFrom.SecretKeyRef != nil {
					addEnv(refSecret, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	volumes = slices.DeleteFunc(volumes, func(r objectRef) bool { return inEnv[r] })
	byName := func(x, y objectRef) int {
		return cmp.Or(strings.Compare(x.name, y.name), strings.Compare(x.kind, y.kind))
	}
	slices.SortFunc(volumes, byName)
	slices.SortFunc(env, byName)
	refs := make([]podConfigRef, 0, len(volumes)+len(env))
	for _, r := range slices.Concat(volumes, env) {
		refs = append(refs, podConfigRef{obj: r, live: live[r]})
	}
	return refs
}

func hasEnvRefs(cs []corev1.Container) bool {
	for _, c := range cs {
		if len(c.EnvFrom) > 0 {
			return true
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && (e.ValueFrom.ConfigMapKeyRef != nil || e.ValueFrom.SecretKeyRef != nil) {
				return true
			}
		}
	}
	return false
}

// mountedLive reports whether some container mounts the volume without
// subPath (or subPathExpr), so that the kubelet keeps its files current. A
// volume mounted only through subPath, or not at all, is read as it was
// when the pod started.
func mountedLive(pod *corev1.Pod, volume string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, m := range c.VolumeMounts {
				if m.Name == volume && m.SubPath == "" && m.SubPathExpr == "" {
					return true
				}
			}
		}
	}
	return false
}

// configSnapshot is what the kubelet goes by when a table is built.
type configSnapshot struct {
	// history holds each object's versions, in the order observed.
	history map[objectRef][]configVersion
	// starts are when the ready pods started (see kubelet.sawPod); a
	// ready pod without one starts at now.
	starts      map[podKey]time.Time
	now         time.Time
	kubeletSync time.Duration
}

// podKey names a pod incarnation: a pod recreated with the same name is
// another pod.
type podKey struct {
	namespace, name string
	uid             string
}

func keyOfPod(pod *corev1.Pod) podKey {
	return podKey{pod.Namespace, pod.Name, string(pod.UID)}
}

// podConfig is what a ready pod makes of the objects it references.
type podConfig struct {
	// annotations are the pod's with each config key applied over them;
	// the pod's own map (the cache's: never written) when no key applies.
	annotations map[string]string
	// origins name the object and field that set an annotation.
	origins map[string]configOrigin
	uses    []configUse
}

type configOrigin struct {
	obj   objectRef
	field string // data[<key>] or binaryData[<key>]
}

// configUse is a pod's view of one object in a table: the key of its
// ConfigUse row and the counter of that row.
type configUse struct {
	key configUseKey
	// n is attached by the emulator before it publishes the table; nil in
	// a table built alone.
	n *atomic.Int64
}

type configUseKey struct {
	namespace, workload, pod, object, hash string
}

// podConfig computes the views of a ready pod, and notes in the table when
// a live one will next change.
func (b *builder) podConfig(pod *corev1.Pod, workload string) podConfig {
	cfg := podConfig{annotations: pod.Annotations}
	refs := podConfigRefs(pod)
	if len(refs) == 0 {
		return cfg
	}
	c := &b.config
	start, ok := c.starts[keyOfPod(pod)]
	if !ok {
		start = c.now
	}
	for _, ref := range refs {
		history := c.history[ref.obj]
		at := ref.viewTime(start, c.now, c.kubeletSync)
		if ref.live {
			if next := nextAfter(history, at); next != nil {
				// The kubelet delivers the next version once it has synced
				// past it; no informer event says when that is.
				b.viewChangesAt(next.observed.Add(c.kubeletSync))
			}
		}
		var hash string
		view := viewAt(history, at)
		if view != nil {
			hash = view.hash
		}
		cfg.uses = append(cfg.uses, configUse{key: configUseKey{
			namespace: pod.Namespace, workload: workload, pod: pod.Name,
			object: ref.obj.kind + "/" + ref.obj.name, hash: hash,
		}})
		if view == nil || len(view.keys) == 0 {
			continue
		}
		if cfg.origins == nil {
			cfg.annotations = make(map[string]string, len(pod.Annotations)+len(view.keys))
			maps.Copy(cfg.annotations, pod.Annotations)
			cfg.origins = map[string]configOrigin{}
		}
		for _, k := range view.keys {
			name := annotationPrefix + strings.TrimPrefix(k.key, configKeyPrefix)
			cfg.annotations[name] = k.value
			cfg.origins[name] = configOrigin{obj: ref.obj, field: k.field + "[" + k.key + "]"}
		}
	}
	return cfg
}

// viewChangesAt notes that some pod's view changes at t, so that the
// emulator rebuilds the table then.
func (b *builder) viewChangesAt(t time.Time) {
	if b.t.configChangeAt.IsZero() || t.Before(b.t.configChangeAt) {
		b.t.configChangeAt = t
	}
}

// behaviourProblem reports a behaviour problem where its value came from:
// the object and key that set it, or the pod's annotation.
func (b *builder) behaviourProblem(pod *corev1.Pod, cfg *podConfig, p annotationProblem) {
	o, ok := cfg.origins[p.Annotation]
	if !ok {
		b.problem(kindPod, &pod.ObjectMeta, "metadata.annotations["+p.Annotation+"]", "%s", p.Message)
		return
	}
	kind := kindConfigMap
	if o.obj.kind == refSecret {
		kind = kindSecret
	}
	b.problem(kind, &metav1.ObjectMeta{Namespace: o.obj.namespace, Name: o.obj.name}, o.field, "%s", p.Message)
}

// attachConfigCounters gives every view in a table about to be published
// its counter, creating the row on first use.
func (e *Emulator) attachConfigCounters(t *table) {
	for _, pod := range t.configPods {
		for i := range pod.configs {
			u := &pod.configs[i]
			if c, ok := e.configUses.Load(u.key); ok {
				u.n = c.(*atomic.Int64)
				continue
			}
			c, _ := e.configUses.LoadOrStore(u.key, new(atomic.Int64))
			u.n = c.(*atomic.Int64)
		}
	}
}

// countConfigUses counts one request a pod served in each of its views.
func countConfigUses(pod *podInfo) {
	for i := range pod.configs {
		if n := pod.configs[i].n; n != nil {
			n.Add(1)
		}
	}
}

// ConfigServed is the ground truth of configuration: for each pod of the
// namespace and each ConfigMap or Secret it references, the requests it
// served per content hash it saw, since the emulator was created. A row
// appears, with no requests, once a table that gives the pod that view is
// in use. Rows are sorted by workload, pod, object and hash.
func (e *Emulator) ConfigServed(namespace string) []ConfigUse {
	var out []ConfigUse
	e.configUses.Range(func(k, v any) bool {
		key := k.(configUseKey)
		if key.namespace == namespace {
			out = append(out, ConfigUse{
				Workload: key.workload, Pod: key.pod, Object: key.object, Hash: key.hash,
				Requests: v.(*atomic.Int64).Load(),
			})
		}
		return true
	})
	slices.SortFunc(out, func(x, y ConfigUse) int {
		return cmp.Or(
			strings.Compare(x.Workload, y.Workload),
			strings.Compare(x.Pod, y.Pod),
			strings.Compare(x.Object, y.Object),
			strings.Compare(x.Hash, y.Hash),
		)
	})
	return out
}
