package mesh

import (
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// container returns the pod's first container, adding one if it has none.
func container(p *corev1.Pod) *corev1.Container {
	if len(p.Spec.Containers) == 0 {
		p.Spec.Containers = []corev1.Container{{Name: "app"}}
	}
	return &p.Spec.Containers[0]
}

// envFrom makes the app read every key of a ConfigMap (kind "configmap")
// or Secret ("secret") as environment variables.
func envFrom(kind, name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		var from corev1.EnvFromSource
		if kind == refSecret {
			from.SecretRef = &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}
		} else {
			from.ConfigMapRef = &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}
		}
		c := container(p)
		c.EnvFrom = append(c.EnvFrom, from)
	}
}

// mounted makes the app mount a ConfigMap or Secret as a volume, as a
// directory or, with subPath, one file of it.
func mounted(kind, name string, subPath bool) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		v := corev1.Volume{Name: "v-" + name}
		if kind == refSecret {
			v.Secret = &corev1.SecretVolumeSource{SecretName: name}
		} else {
			v.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}
		}
		p.Spec.Volumes = append(p.Spec.Volumes, v)
		m := corev1.VolumeMount{Name: v.Name, MountPath: "/etc/" + name}
		if subPath {
			m.SubPath = "app.properties"
		}
		c := container(p)
		c.VolumeMounts = append(c.VolumeMounts, m)
	}
}

func cmRef(name string) objectRef     { return objectRef{refConfigMap, "demo", name} }
func secretRef(name string) objectRef { return objectRef{refSecret, "demo", name} }

// cmAt is a ConfigMap's content as observed at a time.
func cmAt(at time.Time, data map[string]string) configVersion {
	v := configMapVersion(&corev1.ConfigMap{Data: data})
	v.observed = at
	return v
}

// missingAt is a deletion observed at a time.
func missingAt(at time.Time) configVersion { return configVersion{observed: at} }

// configViews are the hashes of what each ready pod of a table sees, by
// pod and object.
func configViews(tbl *table) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, pod := range tbl.configPods {
		out[pod.name] = map[string]string{}
		for _, u := range pod.configs {
			out[pod.name][u.key.object] = u.key.hash
		}
	}
	return out
}

func podIn(t *testing.T, tbl *table, name string) *podInfo {
	t.Helper()
	for _, svc := range tbl.services {
		for _, p := range svc.endpoints {
			if p.name == name {
				return p
			}
		}
	}
	t.Fatalf("pod %s is not an endpoint", name)
	return nil
}

func TestPodConfigRefs(t *testing.T) {
	pod := func(opts ...func(*corev1.Pod)) *corev1.Pod {
		return deploymentPod("demo", "app", "aaa111", 0, nil, opts...)
	}
	withInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "init-config"}, Key: "a"}}},
			{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "init-secret"}, Key: "b"}}},
			{Name: "C", Value: "plain"},
		}}}
	}
	projected := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "all", VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "p-config"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "p-secret"}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{}},
			}},
		}})
		c := container(p)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "all", MountPath: "/etc/all"})
	}
	subPathExpr := func(p *corev1.Pod) {
		mounted(refConfigMap, "expr", true)(p)
		m := &container(p).VolumeMounts[len(container(p).VolumeMounts)-1]
		m.SubPath, m.SubPathExpr = "", "$(POD_NAME)"
	}
	unmounted := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "idle", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "idle"}}}})
	}

	tests := []struct {
		name string
		pod  *corev1.Pod
		want []podConfigRef
	}{
		{
			name: "a pod that references nothing has no references",
			pod:  pod(),
		},
		{
			name: "envFrom is read at start",
			pod:  pod(envFrom(refConfigMap, "app-config"), envFrom(refSecret, "app-secret")),
			want: []podConfigRef{{obj: cmRef("app-config")}, {obj: secretRef("app-secret")}},
		},
		{
			name: "key references of init containers are read at start",
			pod:  pod(withInit),
			want: []podConfigRef{{obj: cmRef("init-config")}, {obj: secretRef("init-secret")}},
		},
		{
			name: "a volume mounted as a directory is live",
			pod:  pod(mounted(refConfigMap, "app-config", false), mounted(refSecret, "tls", false)),
			want: []podConfigRef{{obj: cmRef("app-config"), live: true}, {obj: secretRef("tls"), live: true}},
		},
		{
			name: "a volume mounted only through subPath is read at start",
			pod:  pod(mounted(refConfigMap, "app-config", true)),
			want: []podConfigRef{{obj: cmRef("app-config")}},
		},
		{
			name: "a subPathExpr mount is not refreshed either",
			pod:  pod(subPathExpr),
			want: []podConfigRef{{obj: cmRef("expr")}},
		},
		{
			name: "a volume mounted both through subPath and as a directory is live",
			pod: pod(mounted(refConfigMap, "app-config", true), func(p *corev1.Pod) {
				c := container(p)
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "v-app-config", MountPath: "/etc/all"})
			}),
			want: []podConfigRef{{obj: cmRef("app-config"), live: true}},
		},
		{
			name: "a volume no container mounts is read at start",
			pod:  pod(unmounted),
			want: []podConfigRef{{obj: cmRef("idle")}},
		},
		{
			name: "a projected volume references each of its ConfigMaps and Secrets",
			pod:  pod(projected),
			want: []podConfigRef{{obj: cmRef("p-config"), live: true}, {obj: secretRef("p-secret"), live: true}},
		},
		{
			name: "volumes come before the environment, each by name",
			pod: pod(envFrom(refConfigMap, "b-env"), envFrom(refConfigMap, "a-env"),
				mounted(refConfigMap, "z-vol", false), mounted(refSecret, "c-vol", true)),
			want: []podConfigRef{
				{obj: secretRef("c-vol")}, {obj: cmRef("z-vol"), live: true},
				{obj: cmRef("a-env")}, {obj: cmRef("b-env")},
			},
		},
		{
			name: "an object in a volume and in the environment is listed once, among the environment's, and live",
			pod:  pod(mounted(refConfigMap, "shared", false), envFrom(refConfigMap, "shared"), envFrom(refConfigMap, "a-env")),
			want: []podConfigRef{{obj: cmRef("a-env")}, {obj: cmRef("shared"), live: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podConfigRefs(tt.pod)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(podConfigRef{}, objectRef{})); diff != "" {
				t.Errorf("references mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfigViews checks which version each kind of reference sees, with
// time as a value: the kubelet syncs live volumes 20 s behind.
func TestConfigViews(t *testing.T) {
	const sync = 20 * time.Second
	t0 := epoch.Add(time.Hour)
	v1 := cmAt(t0, map[string]string{"mode": "one"})
	v2 := cmAt(t0.Add(time.Minute), map[string]string{"mode": "two"})
	history := map[objectRef][]configVersion{cmRef("app-config"): {v1, v2}}

	tests := []struct {
		name          string
		ref           func(*corev1.Pod)
		started, now  time.Duration // after t0
		want          string
		wantChangeAt  time.Duration // after t0; 0 for none
		wantNoChanges bool
	}{
		{
			name: "an env reference is frozen at the pod's start",
			ref:  envFrom(refConfigMap, "app-config"), started: 30 * time.Second, now: time.Hour,
			want: v1.hash, wantNoChanges: true,
		},
		{
			name: "a subPath-only volume is frozen at the pod's start",
			ref:  mounted(refConfigMap, "app-config", true), started: 30 * time.Second, now: time.Hour,
			want: v1.hash, wantNoChanges: true,
		},
		{
			name: "a live volume still shows the old content before KubeletSync has passed",
			ref:  mounted(refConfigMap, "app-config", false), started: 30 * time.Second, now: time.Minute + sync - time.Millisecond,
			want: v1.hash, wantChangeAt: time.Minute + sync,
		},
		{
			name: "a live volume follows the object once KubeletSync has passed",
			ref:  mounted(refConfigMap, "app-config", false), started: 30 * time.Second, now: time.Minute + sync,
			want: v2.hash, wantNoChanges: true,
		},
		{
			name: "a pod started after a change reads the new content at once",
			ref:  envFrom(refConfigMap, "app-config"), started: time.Minute + time.Second, now: time.Minute + 2*time.Second,
			want: v2.hash, wantNoChanges: true,
		},
		{
			name: "a live volume of a pod started after a change shows the new content at once",
			ref:  mounted(refConfigMap, "app-config", false), started: time.Minute + time.Second, now: time.Minute + 2*time.Second,
			want: v2.hash, wantNoChanges: true,
		},
		{
			name: "an object created after the pod started is missing to its environment",
			ref:  envFrom(refConfigMap, "app-config"), started: -time.Second, now: time.Hour,
			want: "", wantNoChanges: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := deploymentPod("demo", "app", "aaa111", 0, map[string]string{"app": "app"}, tt.ref)
			tbl, problems := buildTable(snapshot{
				services: []*corev1.Service{service("demo", "app", map[string]string{"app": "app"})},
				pods:     []*corev1.Pod{p},
				config: configSnapshot{
					history: history, starts: map[podKey]time.Time{keyOfPod(p): t0.Add(tt.started)},
					now: t0.Add(tt.now), kubeletSync: sync,
				},
			})
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			want := map[string]map[string]string{p.Name: {"configmap/app-config": tt.want}}
			if diff := cmp.Diff(want, configViews(tbl)); diff != "" {
				t.Errorf("views mismatch (-want +got):\n%s", diff)
			}
			var wantChange time.Time
			if !tt.wantNoChanges {
				wantChange = t0.Add(tt.wantChangeAt)
			}
			if !tbl.configChangeAt.Equal(wantChange) {
				t.Errorf("the table says the views change at %v, want %v", tbl.configChangeAt, wantChange)
			}
		})
	}
}

// configWorld is the demo world with app-v2's pod reading objects, at a
// time when every object of history is delivered.
func configWorld(history map[objectRef][]configVersion, v2Opts ...func(*corev1.Pod)) snapshot {
	s := newDemo(v2Opts...).snapshot()
	s.config = configSnapshot{history: history, now: epoch.Add(time.Hour), kubeletSync: 20 * time.Second}
	return s
}

// answersByPod routes n plain requests to app and returns the status codes each
// pod answered with.
func answersByPod(tbl *table, n int) map[string]map[int]int {
	out := map[string]map[int]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for range n {
		req := request("app", nil)
		r := tbl.route(&req, rng)
		if out[r.resp.Pod] == nil {
			out[r.resp.Pod] = map[int]int{}
		}
		out[r.resp.Pod][r.resp.Code]++
	}
	return out
}

func TestConfigKeysSetTheBehaviour(t *testing.T) {
	failing := map[string]string{configKeyPrefix + aspectErrorRate: "1", "app.properties": "x=1"}
	v1Pods := map[string]map[int]int{d1Pod(0): {200: 10}, d1Pod(1): {200: 10}}
	withV2 := func(codes map[int]int) map[string]map[int]int {
		out := maps.Clone(v1Pods)
		out[v2Pod0] = codes
		return out
	}
	tests := []struct {
		name    string
		history map[objectRef][]configVersion
		v2Opts  []func(*corev1.Pod)
		want    map[string]map[int]int
	}{
		{
			name:    "a ConfigMap key error-rate 1 fails every request of the pod that reads it, and only those",
			history: map[objectRef][]configVersion{cmRef("faulty"): {cmAt(time.Time{}, failing)}},
			v2Opts:  []func(*corev1.Pod){envFrom(refConfigMap, "faulty")},
			want:    withV2(map[int]int{500: 10}),
		},
		{
			name: "a binaryData key counts as a data key",
			history: map[objectRef][]configVersion{cmRef("faulty"): {func() configVersion {
				v := configMapVersion(&corev1.ConfigMap{BinaryData: map[string][]byte{configKeyPrefix + aspectErrorRate: []byte("1")}})
				return v
			}()}},
			v2Opts: []func(*corev1.Pod){mounted(refConfigMap, "faulty", false)},
			want:   withV2(map[int]int{500: 10}),
		},
		{
			name: "a Secret key sets the behaviour too",
			history: map[objectRef][]configVersion{secretRef("faulty"): {
				secretVersion(&corev1.Secret{Data: map[string][]byte{configKeyPrefix + aspectErrorRate: []byte("1")}}),
			}},
			v2Opts: []func(*corev1.Pod){envFrom(refSecret, "faulty")},
			want:   withV2(map[int]int{500: 10}),
		},
		{
			name:    "config wins over the pod's annotations aspect by aspect",
			history: map[objectRef][]configVersion{cmRef("faulty"): {cmAt(time.Time{}, failing)}},
			v2Opts: []func(*corev1.Pod){envFrom(refConfigMap, "faulty"),
				annotated(map[string]string{annotationErrorRate: "0", annotationErrorCode: "503"})},
			want: withV2(map[int]int{503: 10}),
		},
		{
			name: "the environment's objects apply after the volumes', each by name",
			history: map[objectRef][]configVersion{
				cmRef("a-env"):  {cmAt(time.Time{}, map[string]string{configKeyPrefix + aspectErrorCode: "502"})},
				cmRef("b-env"):  {cmAt(time.Time{}, map[string]string{configKeyPrefix + aspectErrorCode: "504"})},
				cmRef("z-vol"):  {cmAt(time.Time{}, map[string]string{configKeyPrefix + aspectErrorCode: "501", configKeyPrefix + aspectErrorRate: "1"})},
				cmRef("unread"): {cmAt(time.Time{}, map[string]string{configKeyPrefix + aspectErrorCode: "599"})},
			},
			v2Opts: []func(*corev1.Pod){envFrom(refConfigMap, "b-env"), envFrom(refConfigMap, "a-env"), mounted(refConfigMap, "z-vol", false)},
			want:   withV2(map[int]int{504: 10}),
		},
		{
			name:    "an object no pod references changes nothing",
			history: map[objectRef][]configVersion{cmRef("faulty"): {cmAt(time.Time{}, failing)}},
			want:    withV2(map[int]int{200: 10}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := configWorld(tt.history, tt.v2Opts...)
			before := s.pods[2].DeepCopy()
			tbl, problems := buildTable(s)
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			if diff := cmp.Diff(tt.want, answersByPod(tbl, 30)); diff != "" {
				t.Errorf("answers by pod mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, s.pods[2]); diff != "" {
				t.Errorf("buildTable modified the cached pod (-before +after):\n%s", diff)
			}
		})
	}
}

func d1Pod(i int) string { return deploymentPod("demo", "app-v1", "aaa111", i, nil).Name }

func TestABadConfigValueIsAProblemNamingTheObjectAndKey(t *testing.T) {
	history := map[objectRef][]configVersion{
		cmRef("app-config"): {cmAt(time.Time{}, map[string]string{configKeyPrefix + aspectErrorRate: "lots"})},
		secretRef("app-secret"): {secretVersion(&corev1.Secret{Data: map[string][]byte{
			configKeyPrefix + aspectLatency: []byte("fast"),
		}})},
	}
	s := configWorld(history, envFrom(refConfigMap, "app-config"), mounted(refSecret, "app-secret", false),
		annotated(map[string]string{annotationErrorRate: "1"}))
	// A second pod reading the same object: the problem is the object's,
	// reported once.
	s.pods = append(s.pods, deploymentPod("demo", "app-v2", "bbb222", 1, map[string]string{"app": "app", "version": "v2"},
		envFrom(refConfigMap, "app-config")))
	tbl, problems := buildTable(s)
	want := []Problem{
		{Kind: "ConfigMap", Namespace: "demo", Name: "app-config", Field: "data[sandbox.fledge.dev.error-rate]",
			Message: `"lots" is not a number in [0,1]; ignored, the pod behaves as healthy`},
		{Kind: "Secret", Namespace: "demo", Name: "app-secret", Field: "data[sandbox.fledge.dev.latency-ms]",
			Message: `"fast": "fast" is not a positive number of milliseconds; ignored, the pod answers with the default latency p50=5,p95=20`},
	}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	const named = `configmap demo/app-config: data[sandbox.fledge.dev.error-rate]: "lots" is not a number in [0,1]; ignored, the pod behaves as healthy`
	if len(problems) > 0 && problems[0].String() != named {
		t.Errorf("problem reads %q, want %q", problems[0].String(), named)
	}
	// The malformed config value overrides the annotation's 1 and leaves
	// the aspect at its default.
	if got := podIn(t, tbl, v2Pod0).behaviour; got != defaultBehaviour() {
		t.Errorf("behaviour %+v, want the default", got)
	}
}

func TestAMissingObjectChangesNothing(t *testing.T) {
	annotations := map[string]string{annotationErrorRate: "1", annotationErrorCode: "503"}
	wantBehaviour, _ := parseBehaviour(annotations)
	history := map[objectRef][]configVersion{
		// Deleted before the pod started.
		cmRef("deleted"): {cmAt(time.Time{}, map[string]string{configKeyPrefix + aspectErrorRate: "0"}), missingAt(epoch)},
	}
	s := configWorld(history, envFrom(refConfigMap, "never-created"), mounted(refConfigMap, "deleted", false),
		mounted(refSecret, "never-created-either", true), annotated(annotations))
	tbl, problems := buildTable(s)
	if len(problems) > 0 {
		t.Errorf("problems: %v", problems)
	}
	if got := podIn(t, tbl, v2Pod0).behaviour; got != wantBehaviour {
		t.Errorf("behaviour %+v, want the annotations' %+v", got, wantBehaviour)
	}
	want := map[string]map[string]string{v2Pod0: {
		"configmap/never-created": "", "configmap/deleted": "", "secret/never-created-either": "",
	}}
	if diff := cmp.Diff(want, configViews(tbl)); diff != "" {
		t.Errorf("views mismatch (-want +got):\n%s", diff)
	}
}

func TestConfigDataHash(t *testing.T) {
	h := ConfigDataHash(map[string]string{"a": "1", "b": "2"}, nil)
	if len(h) != 12 {
		t.Fatalf("hash %q, want 12 hex digits", h)
	}
	tests := []struct {
		name      string
		got, want string
		same      bool
	}{
		{"a value hashes alike from data and binaryData",
			ConfigDataHash(map[string]string{"a": "1"}, map[string][]byte{"b": []byte("2")}), h, true},
		{"a Secret's data hashes like a ConfigMap's",
			ConfigDataHash(nil, map[string][]byte{"a": []byte("1"), "b": []byte("2")}), h, true},
		{"a changed value changes the hash",
			ConfigDataHash(map[string]string{"a": "1", "b": "3"}, nil), h, false},
		{"a renamed key changes the hash",
			ConfigDataHash(map[string]string{"a": "1", "c": "2"}, nil), h, false},
		{"where a key ends and its value begins matters",
			ConfigDataHash(map[string]string{"ab": "c"}, nil), ConfigDataHash(map[string]string{"a": "bc"}, nil), false},
		{"an empty object has a hash of its own",
			ConfigDataHash(nil, nil), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.got == tt.want) != tt.same {
				t.Errorf("hash %q vs %q: same = %t, want %t", tt.got, tt.want, !tt.same, tt.same)
			}
		})
	}
}
