package engine

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// Config tracking, the engine's side (the decision core's is
// rollout/config.go): which ConfigMaps and Secrets a template reads, their
// content's hashes, fledge's copies of them, and the Deployment's pods
// that may read older content.

const (
	// AnnotationConfig on a ConfigMap or Secret: "ignore" opts it out of
	// config tracking (its changes are not canaried; they reach the pods as
	// Kubernetes delivers them).
	AnnotationConfig = "fledge.dev/config"
	// ConfigIgnore is AnnotationConfig's opt-out value.
	ConfigIgnore = "ignore"
	// LabelConfigCopyOf names the object a copy of config content copies.
	LabelConfigCopyOf = "fledge.dev/config-copy-of"
	// annotationContentHash holds, on the informer caches' ConfigMaps and
	// Secrets only, their content's hash: the content itself is dropped
	// before it is cached (leanConfig), so no Secret's data stays in
	// fledge's memory.
	annotationContentHash = "fledge.dev/content-hash"
)

// ContentHash identifies a ConfigMap's content: a hash of the sorted keys
// and values of data and binaryData.
func ContentHash(data map[string]string, binaryData map[string][]byte) string {
	return contentHash(sha256.New(), data, binaryData)
}

// SecretHash identifies a Secret's content: an HMAC of it keyed with the
// Secret's UID, so that the hash shown in a Flight (which more people may
// read than the Secret) cannot be tried against guessed values by anyone
// who cannot read the Secret itself.
func SecretHash(uid types.UID, data map[string][]byte) string {
	return contentHash(hmac.New(sha256.New, []byte(uid)), nil, data)
}

func contentHash(h hash.Hash, data map[string]string, binaryData map[string][]byte) string {
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range data {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(h, "s%d:%s=%d:%s;", len(k), k, len(data[k]), data[k])
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range binaryData {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(h, "b%d:%s=%d:", len(k), k, len(binaryData[k]))
		h.Write(binaryData[k])
		h.Write([]byte{';'})
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// leanConfig drops a cached ConfigMap's or Secret's content, keeping its
// hash in an annotation (of the cached copy: the object is not changed). A
// transform may see an object twice (client-go asks for idempotence): once
// lean, it is left as it is.
func leanConfig(obj any) {
	var hash string
	var m *metav1.ObjectMeta
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		if o.Data == nil && o.BinaryData == nil && o.Annotations[annotationContentHash] != "" {
			return
		}
		hash, m = ContentHash(o.Data, o.BinaryData), &o.ObjectMeta
		o.Data, o.BinaryData = nil, nil
	case *corev1.Secret:
		if o.Data == nil && o.StringData == nil && o.Annotations[annotationContentHash] != "" {
			return
		}
		hash, m = SecretHash(o.UID, o.Data), &o.ObjectMeta
		o.Data, o.StringData = nil, nil
	default:
		return
	}
	a := make(map[string]string, len(m.Annotations)+1)
	for k, v := range m.Annotations {
		a[k] = v
	}
	a[annotationContentHash] = hash
	m.Annotations = a
}

// configRef is one reference of a pod template to a ConfigMap or Secret.
type configRef struct {
	kind, name string
	// field is where the template names it, for messages.
	field    string
	optional bool
}

// configRefs are the ConfigMaps and Secrets a pod template reads: volumes
// (projected ones too), and env and envFrom of every container, init
// containers included.
func configRefs(spec *corev1.PodSpec) []configRef {
	var out []configRef
	add := func(kind, name, field string, optional *bool) {
		if name != "" {
			out = append(out, configRef{kind: kind, name: name, field: field, optional: ptr.Deref(optional, false)})
		}
	}
	for i, v := range spec.Volumes {
		f := fmt.Sprintf("spec.template.spec.volumes[%d]", i)
		if v.ConfigMap != nil {
			add(rollout.ConfigKindConfigMap, v.ConfigMap.Name, f+".configMap.name", v.ConfigMap.Optional)
		}
		if v.Secret != nil {
			add(rollout.ConfigKindSecret, v.Secret.SecretName, f+".secret.secretName", v.Secret.Optional)
		}
		if v.Projected != nil {
			for j, s := range v.Projected.Sources {
				pf := fmt.Sprintf("%s.projected.sources[%d]", f, j)
				if s.ConfigMap != nil {
					add(rollout.ConfigKindConfigMap, s.ConfigMap.Name, pf+".configMap.name", s.ConfigMap.Optional)
				}
				if s.Secret != nil {
					add(rollout.ConfigKindSecret, s.Secret.Name, pf+".secret.name", s.Secret.Optional)
				}
			}
		}
	}
	containers := func(cs []corev1.Container, field string) {
		for i, c := range cs {
			f := fmt.Sprintf("spec.template.spec.%s[%d]", field, i)
			for j, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					add(rollout.ConfigKindConfigMap, r.Name, fmt.Sprintf("%s.env[%d].valueFrom.configMapKeyRef.name", f, j), r.Optional)
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					add(rollout.ConfigKindSecret, r.Name, fmt.Sprintf("%s.env[%d].valueFrom.secretKeyRef.name", f, j), r.Optional)
				}
			}
			for j, e := range c.EnvFrom {
				if r := e.ConfigMapRef; r != nil {
					add(rollout.ConfigKindConfigMap, r.Name, fmt.Sprintf("%s.envFrom[%d].configMapRef.name", f, j), r.Optional)
				}
				if r := e.SecretRef; r != nil {
					add(rollout.ConfigKindSecret, r.Name, fmt.Sprintf("%s.envFrom[%d].secretRef.name", f, j), r.Optional)
				}
			}
		}
	}
	containers(spec.InitContainers, "initContainers")
	containers(spec.Containers, "containers")
	return out
}

// rewriteConfig makes a pod template read fledge's copies of items in
// place of the objects they copy.
func rewriteConfig(spec *corev1.PodSpec, flight string, items []v1alpha1.ConfigItem) {
	if len(items) == 0 {
		return
	}
	copyOf := func(kind, name string) string {
		for _, it := range items {
			if it.Kind == kind && it.Name == name {
				return rollout.CopyName(flight, it)
			}
		}
		return name
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.ConfigMap != nil {
			v.ConfigMap.Name = copyOf(rollout.ConfigKindConfigMap, v.ConfigMap.Name)
		}
		if v.Secret != nil {
			v.Secret.SecretName = copyOf(rollout.ConfigKindSecret, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for j := range v.Projected.Sources {
				s := &v.Projected.Sources[j]
				if s.ConfigMap != nil {
					s.ConfigMap.Name = copyOf(rollout.ConfigKindConfigMap, s.ConfigMap.Name)
				}
				if s.Secret != nil {
					s.Secret.Name = copyOf(rollout.ConfigKindSecret, s.Secret.Name)
				}
			}
		}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			c := &cs[i]
			for j := range c.Env {
				if vf := c.Env[j].ValueFrom; vf != nil {
					if r := vf.ConfigMapKeyRef; r != nil {
						r.Name = copyOf(rollout.ConfigKindConfigMap, r.Name)
					}
					if r := vf.SecretKeyRef; r != nil {
						r.Name = copyOf(rollout.ConfigKindSecret, r.Name)
					}
				}
			}
			for j := range c.EnvFrom {
				if r := c.EnvFrom[j].ConfigMapRef; r != nil {
					r.Name = copyOf(rollout.ConfigKindConfigMap, r.Name)
				}
				if r := c.EnvFrom[j].SecretRef; r != nil {
					r.Name = copyOf(rollout.ConfigKindSecret, r.Name)
				}
			}
		}
	}
}

// configRefIndex indexes Deployments by the "namespace/kind/name" of every
// ConfigMap and Secret their template reads, and configCopyIndex fledge's
// copies by "namespace/flight": a change finds its Deployments, and a
// Flight its copies, without a scan.
const (
	configRefIndex  = "fledge.dev/config-refs"
	configCopyIndex = "fledge.dev/config-copies"
)

func deploymentConfigRefs(obj any) ([]string, error) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok || d.Annotations[rollout.AnnotationRollout] == "" {
		return nil, nil
	}
	var out []string
	for _, r := range configRefs(&d.Spec.Template.Spec) {
		out = append(out, d.Namespace+"/"+r.kind+"/"+r.name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func configCopyOwner(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok || m.GetLabels()[LabelConfigCopyOf] == "" || m.GetLabels()[LabelManagedBy] != managedBy {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil && ref.Kind == "Flight" {
		return []string{m.GetNamespace() + "/" + ref.Name}, nil
	}
	return nil, nil
}

// onConfig looks again at the Flights of the Deployments that read a
// ConfigMap or Secret that changed, and at the Flight a copy is of.
func (c *Controller) onConfig(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	kind := rollout.ConfigKindConfigMap
	if _, ok := obj.(*corev1.Secret); ok {
		kind = rollout.ConfigKindSecret
	}
	if owners, _ := configCopyOwner(obj); len(owners) > 0 {
		c.queue.Add(owners[0])
		return
	}
	sc := c.scopes.of(m.GetNamespace())
	if sc == nil || sc.deploymentIndex == nil {
		return
	}
	deps, _ := sc.deploymentIndex.ByIndex(configRefIndex, m.GetNamespace()+"/"+kind+"/"+m.GetName())
	for _, d := range deps {
		if d, ok := d.(*appsv1.Deployment); ok {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
	}
}

// configObject reads a ConfigMap or Secret of a scope's caches (content
// dropped, its hash in annotationContentHash). A Secret in a namespace
// where fledge may not list them is errSecretsUnreadable.
func (sc *scope) configObject(kind, ns, name string) (metav1.Object, error) {
	idx, resource := sc.configMaps, corev1.Resource("configmaps")
	if kind == rollout.ConfigKindSecret {
		if sc.secrets == nil {
			return nil, errSecretsUnreadable
		}
		idx, resource = sc.secrets, corev1.Resource("secrets")
	}
	o, _, err := idx.GetByKey(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, apierrors.NewNotFound(resource, name)
	}
	return o.(metav1.Object), nil
}

var errSecretsUnreadable = errors.New("fledge may not list Secrets here")

// observeConfig reads the config content the Deployment's template reads,
// the state of fledge's copies of the kept revisions' content, and, while
// it matters, the Deployment's pods made before the content seen last.
func (c *Controller) observeConfig(ctx context.Context, d *appsv1.Deployment, t traffic.Target, st *v1alpha1.FlightStatus, flagDocs []string, o *rollout.Observed) {
	sc := c.scopes.of(d.Namespace)
	if sc == nil || sc.configMaps == nil {
		return
	}
	items, problems, notes := sc.desiredConfig(d, st, flagDocs)
	o.DesiredConfig = items
	o.ConfigProblem = strings.Join(problems, "; ")
	o.ConfigNote = strings.Join(notes, "; ")
	if st.Config == nil {
		return
	}
	c.observeCopies(ctx, sc, d, t, st, o)
}

// Revision is Deployment d's revision as its Flight f knows it: the
// template's hash, and the config content's it reads.
func (c *Controller) Revision(d *appsv1.Deployment, f *v1alpha1.Flight) string {
	var st v1alpha1.FlightStatus
	if f != nil {
		st = f.Status
	}
	var items []v1alpha1.ConfigItem
	if sc := c.scopes.of(d.Namespace); sc != nil && sc.configMaps != nil {
		_, policy, _ := c.resolve(d, f)
		items, _, _ = sc.desiredConfig(d, &st, flagConfigMaps(policy, &st))
	}
	return rollout.WithConfig(TemplateHash(d.Spec.Template), items)
}

// desiredConfig is the config content Deployment d's template reads, what
// of it cannot be known (problems) and what is not tracked (notes).
// The release flags' ConfigMaps (flagDocs) are not tracked: fledge writes
// them as the rollout goes, and pods that mount them read its writes live.
func (sc *scope) desiredConfig(d *appsv1.Deployment, st *v1alpha1.FlightStatus, flagDocs []string) (items []v1alpha1.ConfigItem, problems, notes []string) {
	seen := func(kind, name string) (v1alpha1.ConfigItem, bool) {
		if st.Config == nil {
			return v1alpha1.ConfigItem{}, false
		}
		i := slices.IndexFunc(st.Config.Seen, func(it v1alpha1.ConfigItem) bool { return it.Kind == kind && it.Name == name })
		if i < 0 {
			return v1alpha1.ConfigItem{}, false
		}
		return st.Config.Seen[i], true
	}
	refs := configRefs(&d.Spec.Template.Spec)
	done := map[string]bool{}
	for _, r := range refs {
		key := r.kind + "/" + r.name
		if done[key] || r.kind == rollout.ConfigKindConfigMap && slices.Contains(flagDocs, r.name) {
			continue
		}
		done[key] = true
		obj, err := sc.configObject(r.kind, d.Namespace, r.name)
		switch {
		case errors.Is(err, errSecretsUnreadable):
			notes = append(notes, fmt.Sprintf("secret %s/%s (%s) is not tracked: %s (%s); its changes reach the pods uncanaried", d.Namespace, r.name, r.field, sc.secretsWhy, rbacSecretsHint(d.Namespace)))
			continue
		case apierrors.IsNotFound(err):
			if r.optional {
				continue
			}
			if it, ok := seen(r.kind, r.name); ok {
				items = append(items, it) // as last seen: its pods keep what they read
			}
			problems = append(problems, fmt.Sprintf("%s %s/%s (%s) does not exist", r.kind, d.Namespace, r.name, r.field))
			continue
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s %s/%s (%s) cannot be read: %v", r.kind, d.Namespace, r.name, r.field, err))
			continue
		}
		if obj.GetAnnotations()[AnnotationConfig] == ConfigIgnore {
			continue
		}
		items = append(items, v1alpha1.ConfigItem{Kind: r.kind, Name: r.name, Hash: obj.GetAnnotations()[annotationContentHash]})
	}
	rollout.SortConfig(items)
	return items, problems, notes
}

// observeCopies reads fledge's copies of the kept revisions' content and,
// while they matter, the Deployment's pods older than the content seen.
func (c *Controller) observeCopies(ctx context.Context, sc *scope, d *appsv1.Deployment, t traffic.Target, st *v1alpha1.FlightStatus, o *rollout.Observed) {
	// fledge's copies: missing, lost (the content moved on before it was
	// copied), someone else's under the name, stray.
	wanted := rollout.CopiesWanted(d.Name, st)
	for _, cr := range st.Config.Contents {
		for _, it := range cr.Items {
			name := rollout.CopyName(d.Name, it)
			cp, err := sc.configObject(it.Kind, d.Namespace, name)
			switch {
			case err == nil && !ownedByRef(cp, t.Owner):
				if o.NameTaken == "" {
					o.NameTaken = notOurs(it.Kind, cp)
				}
				continue
			case err == nil:
				continue
			case !apierrors.IsNotFound(err):
				continue // Secrets unreadable: noted above
			}
			if slices.Contains(o.MissingCopies, it) {
				continue
			}
			o.MissingCopies = append(o.MissingCopies, it)
			if src, err := sc.configObject(it.Kind, d.Namespace, it.Name); err != nil || src.GetAnnotations()[annotationContentHash] != it.Hash {
				o.LostCopies = append(o.LostCopies, it)
			}
		}
	}
	copies, _ := sc.configMaps.ByIndex(configCopyIndex, d.Namespace+"/"+d.Name)
	if sc.secrets != nil {
		more, _ := sc.secrets.ByIndex(configCopyIndex, d.Namespace+"/"+d.Name)
		copies = append(copies, more...)
	}
	for _, cp := range copies {
		m := cp.(metav1.Object)
		kind := rollout.ConfigKindConfigMap
		if _, ok := cp.(*corev1.Secret); ok {
			kind = rollout.ConfigKindSecret
		}
		if name := kind + "/" + m.GetName(); !wanted[name] && ownedByRef(m, t.Owner) {
			o.StrayCopies = append(o.StrayCopies, name)
		}
	}
	slices.Sort(o.StrayCopies)
	restoring := st.Watch != nil && st.Watch.State == v1alpha1.WatchRestoring
	if st.Config.SeenAt != nil && (st.Phase == v1alpha1.PhasePromoting || st.Config.Pinned || restoring) {
		o.StalePods = c.stalePods(ctx, d, *st.Config.SeenAt)
	}
}

// rbacSecretsHint says how to let fledge read a namespace's Secrets.
func rbacSecretsHint(ns string) string {
	return fmt.Sprintf("to canary their changes, bind the ClusterRole fledge-config-secrets there (deploy/rbac-namespace.yaml does, with the chart's rbac.configSecrets): kubectl -n %s apply -f deploy/rbac-namespace.yaml", ns)
}

// deploymentPods lists, live, the pods of Deployment d's own ReplicaSets
// (not its canary's, whose pods its selector may match too).
func (c *Controller) deploymentPods(ctx context.Context, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	sets, _ := c.replicaSets.In(d.Namespace).List(sel)
	own := map[types.UID]bool{}
	for _, rs := range sets {
		if metav1.IsControlledBy(rs, d) {
			own[rs.UID] = true
		}
	}
	list, err := c.kube.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String(), ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOfNoCopy(&p); ref != nil && own[ref.UID] && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// stalePods counts the Deployment's pods yet to run the content seen at t:
// those made before t, or, if more, those its replicas lack among the
// ready ones made since (an evicted pod's replacement not up yet). A list
// that fails counts as one: nothing is taken as restarted unseen.
func (c *Controller) stalePods(ctx context.Context, d *appsv1.Deployment, t metav1.Time) int32 {
	pods, err := c.deploymentPods(ctx, d)
	if err != nil {
		c.log.Warn("listing the Deployment's pods failed", "deployment", d.Namespace+"/"+d.Name, "err", err)
		return 1
	}
	var old, fresh int32
	for _, p := range pods {
		switch {
		case !p.CreationTimestamp.After(t.Time):
			// (Both times are to the second: a pod made in the second
			// the content was seen may read the content before it.)
			old++
		case podReady(&p):
			fresh++
		}
	}
	return max(old, ptr.Deref(d.Spec.Replicas, 1)-fresh)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// flagConfigMaps are the ConfigMaps of the release flags the Flight steps
// or its policy would link: fledge writes them during a rollout.
func flagConfigMaps(p *rollout.Policy, st *v1alpha1.FlightStatus) []string {
	var out []string
	for _, fl := range st.Flags {
		out = append(out, fl.ConfigMap)
	}
	if p != nil {
		for _, rf := range p.ReleaseFlags {
			out = append(out, rf.ConfigMap)
		}
	}
	return out
}
