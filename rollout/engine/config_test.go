package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// podSpecReadingConfig reads ConfigMap "app" in a volume, Secret "creds"
// through env, ConfigMap "flags" through envFrom of an init container,
// both through a projected volume, and an optional ConfigMap.
func podSpecReadingConfig() corev1.PodSpec {
	return corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
			{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
			}}}},
			{Name: "maybe", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}, Optional: ptr.To(true)}}},
		},
		InitContainers: []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "flags"}}}}}},
		Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "pw"}}},
			{Name: "PLAIN", Value: "x"},
		}}},
	}
}

// Every place a pod template can name a ConfigMap or Secret is read, with
// the field for messages, and rewritten to fledge's copies.
func TestConfigReferencesAreFoundAndRewrittenToCopies(t *testing.T) {
	spec := podSpecReadingConfig()
	var got []string
	for _, r := range configRefs(&spec) {
		s := r.kind + " " + r.name + " " + r.field
		if r.optional {
			s += " optional"
		}
		got = append(got, s)
	}
	want := []string{
		"configmap app spec.template.spec.volumes[0].configMap.name",
		"configmap app spec.template.spec.volumes[1].projected.sources[0].configMap.name",
		"secret creds spec.template.spec.volumes[1].projected.sources[1].secret.name",
		"configmap extra spec.template.spec.volumes[2].configMap.name optional",
		"configmap flags spec.template.spec.initContainers[0].envFrom[0].configMapRef.name",
		"secret creds spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("references (-want +got):\n%s", diff)
	}
	items := []v1alpha1.ConfigItem{
		{Kind: rollout.ConfigKindConfigMap, Name: "app", Hash: "h1"},
		{Kind: rollout.ConfigKindConfigMap, Name: "flags", Hash: "h2"},
		{Kind: rollout.ConfigKindSecret, Name: "creds", Hash: "h3"},
	}
	rewriteConfig(&spec, "web", items)
	var names []string
	for _, r := range configRefs(&spec) {
		names = append(names, r.kind+"/"+r.name)
	}
	if diff := cmp.Diff([]string{"configmap/web-app-h1", "configmap/web-app-h1", "secret/web-creds-h3", "configmap/extra", "configmap/web-flags-h2", "secret/web-creds-h3"}, names); diff != "" {
		t.Fatalf("rewritten (-want +got):\n%s", diff)
	}
}

// The caches keep a hash of a ConfigMap's or Secret's content, never the
// content; the hash changes with any key or value, binary ones too.
func TestTheCacheKeepsAContentHashNotTheContent(t *testing.T) {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Annotations: map[string]string{"a": "b"}}, Data: map[string][]byte{"pw": []byte("hunter2")}, StringData: map[string]string{"x": "y"}}
	sec.UID = "uid-1"
	want := SecretHash(sec.UID, sec.Data)
	if want == ContentHash(nil, sec.Data) || want == SecretHash("uid-2", sec.Data) {
		t.Fatal("a Secret's hash must be keyed with its UID")
	}
	if _, err := lean(sec); err != nil {
		t.Fatal(err)
	}
	if sec.Data != nil || sec.StringData != nil {
		t.Fatalf("the Secret's content is cached: %v %v", sec.Data, sec.StringData)
	}
	if got := sec.Annotations[annotationContentHash]; got != want || sec.Annotations["a"] != "b" {
		t.Fatalf("annotations %v, want the hash %s beside the object's own", sec.Annotations, want)
	}
	// A transform may run twice on an object: the hash stays.
	if _, err := lean(sec); err != nil {
		t.Fatal(err)
	}
	if got := sec.Annotations[annotationContentHash]; got != want {
		t.Fatalf("after a second transform the hash is %s, want %s", got, want)
	}
	hashes := map[string]string{}
	for name, h := range map[string]string{
		"empty":         ContentHash(nil, nil),
		"a=1":           ContentHash(map[string]string{"a": "1"}, nil),
		"a=2":           ContentHash(map[string]string{"a": "2"}, nil),
		"b=1":           ContentHash(map[string]string{"b": "1"}, nil),
		"binary a=1":    ContentHash(nil, map[string][]byte{"a": []byte("1")}),
		"a=1,b=":        ContentHash(map[string]string{"a": "1", "b": ""}, nil),
		"a=1b (joined)": ContentHash(map[string]string{"a": "1b"}, nil),
	} {
		if other, dup := hashes[h]; dup {
			t.Errorf("%s and %s hash alike (%s)", name, other, h)
		}
		hashes[h] = name
	}
	if ContentHash(map[string]string{"a": "1", "b": "2"}, nil) != ContentHash(map[string]string{"b": "2", "a": "1"}, nil) {
		t.Error("the hash depends on map order")
	}
}
