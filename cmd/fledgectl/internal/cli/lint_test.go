package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lintFile writes content to a file of a temp dir and returns its path.
func lintFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const shopDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: prod
  annotations:
`

func TestLintShippedPoliciesPass(t *testing.T) {
	// The ConfigMap as shipped, and the bare file it holds.
	r := runAs(t, "fledgectl", "lint", "-f", "../../../../deploy/policies.yaml")
	if r.code != ExitOK || r.stdout != "" || !strings.Contains(r.stderr, "lint: 1 policy file (") || !strings.Contains(r.stderr, "0 errors, 0 warnings") {
		t.Fatalf("lint deploy/policies.yaml: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestLint(t *testing.T) {
	policies := lintFile(t, "policies.yaml", `
policies:
  standard:
    steps: [10, 25, 50]
    metrics: [{name: success-rate, min: 0.99}]
`)
	tests := []struct {
		name     string
		files    map[string]string // name: content; "@policies" is the file above
		flags    []string
		wantCode int
		want     []string // lines of stdout, each a substring of one line
	}{
		{
			name:     "a bare policy file with a bad field names it",
			files:    map[string]string{"p.yaml": "policies:\n  standard:\n    steps: [10, 5]\n    metrics: [{name: success-rate, min: 0.99}]\n"},
			wantCode: ExitError,
			want:     []string{"error: p.yaml: policies.standard.steps: [1] = 5: weights must increase"},
		},
		{
			name: "a bad policy in fledge's ConfigMap names the object and the field",
			files: map[string]string{"cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: fledge-policies, namespace: fledge-system}
data:
  policies.yaml: |
    policies:
      standard:
        steps: [10, 25, 50]
        intervall: 1m
`},
			wantCode: ExitError,
			want:     []string{`error: cm.yaml: ConfigMap fledge-system/fledge-policies: data[policies.yaml]: policy file:`, `unknown field "intervall"`},
		},
		{
			name:     "a typo'd annotation key is a warning, and exits 0",
			files:    map[string]string{"d.yaml": shopDeployment + "    fledge.dev/rollout: standard\n    fledge.dev/step-weight: \"5,10\"\n"},
			wantCode: ExitOK,
			want:     []string{"warning: d.yaml: Deployment prod/shop: metadata.annotations[fledge.dev/step-weight]: not an annotation fledge reads", "did you mean fledge.dev/step-weights?"},
		},
		{
			name:     "with --strict, a warning fails",
			files:    map[string]string{"d.yaml": shopDeployment + "    fledge.dev/rollout: standard\n    fledge.dev/step-weight: \"5,10\"\n"},
			flags:    []string{"--strict"},
			wantCode: ExitError,
			want:     []string{"metadata.annotations[fledge.dev/step-weight]"},
		},
		{
			name:     "a bad override is an error naming the annotation",
			files:    map[string]string{"d.yaml": shopDeployment + "    fledge.dev/rollout: standard\n    fledge.dev/interval: 2500ms\n    fledge.dev/max-weight: \"100\"\n"},
			wantCode: ExitError,
			want: []string{
				`error: d.yaml: Deployment prod/shop: metadata.annotations[fledge.dev/max-weight]: "100": want a whole number in 1..99`,
				`error: d.yaml: Deployment prod/shop: metadata.annotations[fledge.dev/interval]: "2500ms"`,
			},
		},
		{
			name:     "with the policy file, a policy that is not in it is an error",
			files:    map[string]string{"@policies": "", "d.yaml": shopDeployment + "    fledge.dev/rollout: standrad\n"},
			wantCode: ExitError,
			want:     []string{`metadata.annotations[fledge.dev/rollout]: no policy "standrad" in the policy file (it has standard)`},
		},
		{
			name:     "with the policy file, overrides must stay within the policy",
			files:    map[string]string{"@policies": "", "d.yaml": shopDeployment + "    fledge.dev/rollout: standard\n    fledge.dev/step-weights: \"20,60\"\n"},
			wantCode: ExitError,
			want:     []string{"metadata.annotations[fledge.dev/step-weights]: weight 60 is above the largest step policy standard allows (50)"},
		},
		{
			name: "a List and other documents: only Deployments are checked",
			files: map[string]string{"all.yaml": `apiVersion: v1
kind: Service
metadata: {name: shop}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: cart
    annotations: {fledge.dev/rollout: standard, fledge.dev/virtual-service: "Not A Name"}
`},
			wantCode: ExitError,
			want:     []string{`error: all.yaml: Deployment cart: metadata.annotations[fledge.dev/virtual-service]: "Not A Name": want a VirtualService name`},
		},
		{
			name:     "fledge's annotations on the pod template are warned about",
			files:    map[string]string{"d.yaml": shopDeployment + "    team: shop\nspec:\n  template:\n    metadata:\n      annotations: {fledge.dev/rollout: standard}\n"},
			wantCode: ExitOK,
			want:     []string{"warning: d.yaml: Deployment prod/shop: spec.template.metadata.annotations[fledge.dev/rollout]: fledge reads the Deployment's own annotations"},
		},
		{
			name:     "an action in a manifest is warned about",
			files:    map[string]string{"d.yaml": shopDeployment + "    fledge.dev/rollout: standard\n    fledge.dev/action: promote\n"},
			wantCode: ExitOK,
			want:     []string{"metadata.annotations[fledge.dev/action]: a one-off request in a manifest is made again by every apply"},
		},
		{
			name:     "a file that is neither is an error",
			files:    map[string]string{"x.yaml": "steps: [10]\n"},
			wantCode: ExitError,
			want:     []string{"error: x.yaml: neither a policy file (no policies:) nor a Kubernetes object (no kind:)"},
		},
		{
			name:     "objects but no Deployment and no policy file is an error",
			files:    map[string]string{"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: shop}\n"},
			wantCode: ExitError,
			want:     []string{"nothing to lint"},
		},
		{
			name:     "YAML that does not parse is an error",
			files:    map[string]string{"bad.yaml": "kind: Deployment\nmetadata: [\n"},
			wantCode: ExitError,
			want:     []string{"error: bad.yaml: not a YAML mapping"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"lint"}
			for name, content := range tc.files {
				if name == "@policies" {
					args = append(args, "-f", policies)
					continue
				}
				path := filepath.Join(dir, name)
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-f", path)
			}
			r := runAs(t, "fledgectl", append(args, tc.flags...)...)
			out := strings.ReplaceAll(r.stdout, dir+string(filepath.Separator), "")
			if r.code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.wantCode, out, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestLintReadsStdinAndPrintsJSON(t *testing.T) {
	var out strings.Builder
	a := &app{
		streams: Streams{In: strings.NewReader(shopDeployment + "    fledge.dev/rollout: standard\n    fledge.dev/intervl: 2m\n"), Out: &out, Err: &strings.Builder{}},
		getenv:  envMap{}.get,
	}
	if code := a.run(t.Context(), []string{"lint", "-f", "-", "-o", "json"}); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var got struct {
		Findings []finding `json:"findings"`
		Warnings int       `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out.String())
	}
	want := finding{File: "<stdin>", Object: "Deployment prod/shop", Field: "metadata.annotations[fledge.dev/intervl]", Severity: severityWarning,
		Message: "not an annotation fledge reads, and ignored (did you mean fledge.dev/interval?)"}
	if got.Warnings != 1 || len(got.Findings) != 1 || got.Findings[0] != want {
		t.Errorf("-o json: %+v\nwant one finding %+v", got, want)
	}
}

// Whatever bytes lint is given, it reports findings and never panics.
func FuzzLint(f *testing.F) {
	for _, seed := range []string{
		"policies:\n  a: {steps: [10]}\n",
		shopDeployment + "    fledge.dev/rollout: x\n    fledge.dev/step-weights: \"5,x\"\n",
		"kind: List\nitems:\n- kind: List\n  items: [{kind: Deployment}]\n",
		"kind: ConfigMap\ndata: {policies.yaml: \"policies: [\"}\n",
		"---\n---\n- a\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, content string) {
		l := &linter{}
		l.file("f.yaml", []byte(content))
		l.finish()
		for _, fd := range l.findings {
			if fd.Severity != severityError && fd.Severity != severityWarning || fd.Message == "" {
				t.Errorf("finding %+v", fd)
			}
		}
	})
}
