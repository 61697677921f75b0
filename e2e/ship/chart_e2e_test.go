//go:build e2e

package ship_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The chart's checks that need no cluster: helm lint, helm template with
// the values a platform team sets, and values.schema.json refusing bad
// values by name. Helm is built from its pinned module by make tools.

const chartDir = "deploy/chart/fledge"

// helm runs bin/helm with args and returns stdout, stderr and its error.
func helm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(repoFile("bin/helm"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// render is helm template of the chart as release "fledge" in
// fledge-system, with values (YAML) over the chart's defaults.
func render(t *testing.T, values string) []*unstructured.Unstructured {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := helm(t, "template", "fledge", repoFile(chartDir), "--namespace", "fledge-system", "-f", f)
	if err != nil {
		t.Fatalf("helm template with\n%s\n%v: %s", values, err, errOut)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			break
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func engineDeployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	u := find(objs, "Deployment", "fledge")
	if u == nil {
		t.Fatal("no Deployment fledge rendered")
	}
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatalf("the engine's Deployment does not fit apps/v1: %v", err)
	}
	return &d
}

func TestChartLints(t *testing.T) {
	for _, values := range []string{"deploy/chart/plain-values.yaml"} {
		out, errOut, err := helm(t, "lint", "--strict", repoFile(chartDir), "-f", repoFile(values))
		if err != nil {
			t.Errorf("helm lint --strict -f %s: %v\n%s%s", values, err, out, errOut)
		}
	}
}

func TestChartRendersWhatTheValuesSay(t *testing.T) {
	// Defaults (namespaced, API on, no load tester, no monitoring).
	objs := render(t, "namespaces: [shop, cart]\n")
	d := engineDeployment(t, objs)
	c := d.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--namespaces=shop,cart", "--tls-cert-file=/etc/fledge-api/tls.crt", "--leader-election-id=fledge", "--secrets-namespace=fledge-system"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want a read-only root and no privilege escalation", sc)
	}
	if ps := d.Spec.Template.Spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Errorf("pod securityContext %+v: want runAsNonRoot", ps)
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Error("no readiness or liveness probe")
	}
	if d.Spec.Template.Spec.Affinity == nil || d.Spec.Template.Spec.Affinity.PodAntiAffinity == nil {
		t.Error("no pod anti-affinity by default")
	}
	for _, ns := range []string{"shop", "cart"} {
		var found bool
		for _, o := range objs {
			found = found || (o.GetKind() == "RoleBinding" && o.GetNamespace() == ns && o.GetName() == "fledge")
		}
		if !found {
			t.Errorf("no RoleBinding fledge in %s", ns)
		}
	}
	for _, want := range [][2]string{{"PodDisruptionBudget", "fledge"}, {"Service", "fledge-api"}, {"ClusterRole", "fledge-api"}, {"ClusterRole", "fledge-view"}, {"CustomResourceDefinition", "flights.fledge.dev"}} {
		if find(objs, want[0], want[1]) == nil {
			t.Errorf("no %s %s rendered by default", want[0], want[1])
		}
	}
	if view := find(objs, "ClusterRole", "fledge-view"); view != nil {
		for _, role := range []string{"view", "edit", "admin"} {
			if view.GetLabels()["rbac.authorization.k8s.io/aggregate-to-"+role] != "true" {
				t.Errorf("fledge-view does not aggregate to %s", role)
			}
		}
	}
	if crd := find(objs, "CustomResourceDefinition", ""); crd != nil && crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Error("the CRD is not kept on uninstall: deleting it would delete every Flight")
	}
	for _, kind := range []string{"Certificate", "ServiceMonitor", "PrometheusRule", "ClusterRoleBinding"} {
		if o := find(objs, kind, "fledge"); o != nil {
			t.Errorf("%s rendered though not asked for", kind)
		}
	}

	// API off: no Service, no TLS volume or flags, no review permissions.
	objs = render(t, "namespaces: [shop]\napi: {enabled: false}\n")
	d = engineDeployment(t, objs)
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "fledge-api-tls" {
			t.Error("API off, yet the pod mounts fledge-api-tls: it would wait in ContainerCreating for it")
		}
	}
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--tls-") || strings.HasPrefix(a, "--api-addr") {
			t.Errorf("API off, yet the engine gets %s", a)
		}
	}
	for _, name := range []string{"fledge-api"} {
		if find(objs, "Service", name) != nil || find(objs, "ClusterRole", name) != nil {
			t.Errorf("API off, yet %s is rendered", name)
		}
	}

	// Everything on.
	objs = render(t, `allNamespaces: true
replicas: 3
podAntiAffinity: hard
api:
  tls:
    certManager: {enabled: true, issuerRef: {name: ca, kind: ClusterIssuer}}
loadtester: {enabled: true}
metrics:
  serviceMonitor: {enabled: true}
  prometheusRule: {enabled: true}
prometheus:
  url: https://prometheus.monitoring:9091
  secretName: prom-client
  caFile: true
  bearerToken: true
  headers: {X-Scope-OrgID: team-a}
`)
	d = engineDeployment(t, objs)
	args := d.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--all-namespaces", "--prometheus-url=https://prometheus.monitoring:9091", "--prometheus-ca-file=/etc/fledge-prometheus/ca.crt",
		"--prometheus-bearer-token-file=/etc/fledge-prometheus/token", "--prometheus-header=X-Scope-OrgID=team-a"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	for _, want := range [][2]string{{"ClusterRoleBinding", "fledge"}, {"Certificate", "fledge-api"}, {"Deployment", "fledge-loadtester"}, {"ServiceMonitor", "fledge"}, {"PrometheusRule", "fledge"}} {
		if find(objs, want[0], want[1]) == nil {
			t.Errorf("no %s %s rendered", want[0], want[1])
		}
	}
	if rule := find(objs, "PrometheusRule", "fledge"); rule != nil {
		groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
		if len(groups) == 0 {
			t.Error("the PrometheusRule has no groups (files/alerts.yaml)")
		}
	}
	if find(objs, "RoleBinding", "fledge") != nil {
		t.Error("allNamespaces, yet a namespace RoleBinding is rendered")
	}
	// The load tester's pods are not the engine's: no selector overlap.
	lt := find(objs, "Deployment", "fledge-loadtester")
	if lt != nil {
		sel, _, _ := unstructured.NestedStringMap(lt.Object, "spec", "selector", "matchLabels")
		podLabels, _, _ := unstructured.NestedStringMap(lt.Object, "spec", "template", "metadata", "labels")
		engineSel := d.Spec.Selector.MatchLabels
		matches := true
		for k, v := range engineSel {
			matches = matches && podLabels[k] == v
		}
		if matches {
			t.Errorf("the engine's selector %v matches the load tester's pods %v", engineSel, podLabels)
		}
		if len(sel) == 0 {
			t.Error("the load tester has no selector")
		}
	}
}

// TestChartRefusesBadValuesNamingTheField: values.schema.json and the
// templates' checks refuse, before anything is applied, with the field.
func TestChartRefusesBadValuesNamingTheField(t *testing.T) {
	for _, tc := range []struct{ values, field string }{
		{"{}", "namespaces"}, // neither namespaces nor allNamespaces
		{"namespaces: [shop]\nreplicas: 0\n", "replicas"},
		{"namespaces: [shop]\nreplica: 2\n", "replica"},
		{"namespaces: [Shop_1]\n", "namespaces"},
		{"namespaces: [shop]\nlogLevel: loud\n", "logLevel"},
		{"namespaces: [shop]\nprometheus: {url: ftp://prom}\n", "url"},
		{"namespaces: [shop]\nprometheus: {url: 'http://p:9090', bearerToken: true}\n", "secretName"},
		{"namespaces: [shop]\nprometheus: {url: 'http://p:9090', secretName: s, bearerToken: true, username: u}\n", "prometheus"},
		{"namespaces: [shop]\nimage: {repository: r, digest: latest}\n", "digest"},
		{"namespaces: [shop]\nleaderElection: {leaseDuration: 15}\n", "leaseDuration"},
		{"namespaces: [shop]\napi: {tls: {certManager: {enabled: true}}}\n", "issuerRef.name"},
		{"namespaces: [shop]\npodAntiAffinity: always\n", "podAntiAffinity"},
		{"namespaces: [shop]\nextraArgs: [verbose]\n", "extraArgs"},
		{"namespaces: [shop]\nleaderElection: {enabled: false}\n", "replicas"}, // two replicas would both act
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := helm(t, "template", "fledge", repoFile(chartDir), "--namespace", "fledge-system", "-f", f)
		if err == nil {
			t.Errorf("values %q were accepted", tc.values)
			continue
		}
		if !strings.Contains(errOut, tc.field) {
			t.Errorf("values %q refused without naming %s:\n%s", tc.values, tc.field, errOut)
		}
	}
}
