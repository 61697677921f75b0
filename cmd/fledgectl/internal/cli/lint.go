package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/rollout"
)

// lint runs, offline, the checks fledge makes of its input: the policy
// file with the parser the engine reloads it with (rollout.ParseConfig),
// and a Deployment's fledge.dev/ annotations with the parsers the engine
// resolves them with, so that what lint accepts the engine accepts.

// policiesKey is the key of fledge's ConfigMap that holds the policy file
// (deploy/policies.yaml, mounted as /etc/fledge/policies.yaml).
const policiesKey = "policies.yaml"

const (
	severityError   = "error"
	severityWarning = "warning"
)

// finding is one problem: where (file, object, field) and what.
type finding struct {
	File     string `json:"file"`
	Object   string `json:"object,omitempty"`
	Field    string `json:"field,omitempty"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

func (f finding) String() string {
	parts := []string{f.Severity, f.File}
	for _, p := range []string{f.Object, f.Field} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, f.Message), ": ")
}

func (a *app) lintCommand() *cobra.Command {
	var files []string
	var strict bool
	cmd := &cobra.Command{
		Use:   "lint -f FILE [-f FILE...]",
		Short: "Check policy files and Deployments' fledge annotations offline",
		Long: `lint checks, without a cluster, what fledge would refuse or ignore, with the
parsers fledge itself uses. Each FILE (- for stdin; a directory: its .yaml,
.yml and .json files) is read by its content:

  - fledge's policy file: its ConfigMap (data["policies.yaml"], as in
    deploy/policies.yaml), or the bare file the ConfigMap holds;
  - Deployments: one, a List, or several YAML documents among other objects
    (which are skipped). Their fledge.dev/ annotations are parsed as fledge
    parses them; with a policy file among the FILEs, each Deployment's policy
    must be in it and its overrides within that policy's bounds.

Each problem is a line on stdout: severity, file, object, field, message.
Errors are what fledge would refuse; warnings what it would ignore, such as
an unknown fledge.dev/ key (a misspelt one is otherwise silently ignored).
It exits 1 on errors, and on warnings too with --strict.

  fledgectl lint -f deploy/policies.yaml -f k8s/shop.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l := &linter{}
			for _, f := range files {
				if err := a.lintPath(l, f); err != nil {
					return err
				}
			}
			l.finish()
			return a.reportLint(l, strict)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file or directory to check (- for stdin); repeatable")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail (exit 1) on warnings too")
	_ = cmd.MarkFlagRequired("filename") // the flag exists: never fails
	return cmd
}

// lintPath reads a file, stdin or a directory's manifests into l.
func (a *app) lintPath(l *linter, path string) error {
	if path == "-" {
		data, err := io.ReadAll(a.streams.In)
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		l.file("<stdin>", data)
		return nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	paths := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		paths = paths[:0]
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				paths = append(paths, filepath.Join(path, e.Name()))
			}
		}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		l.file(p, data)
	}
	return nil
}

func (a *app) reportLint(l *linter, strict bool) error {
	errs, warnings := l.count(severityError), l.count(severityWarning)
	if a.flags.output != formatText {
		b, err := json.MarshalIndent(map[string]any{"findings": l.findings, "errors": errs, "warnings": warnings}, "", "  ")
		if err != nil {
			return err
		}
		if a.flags.output == formatYAML {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		} else {
			b = append(b, '\n')
		}
		if _, err := a.streams.Out.Write(b); err != nil {
			return err
		}
	} else {
		for _, f := range l.findings {
			fmt.Fprintln(a.streams.Out, f)
		}
	}
	summary := fmt.Sprintf("lint: %s: %s, %s", l.summary(), plural(errs, "error"), plural(warnings, "warning"))
	if errs > 0 || strict && warnings > 0 {
		return exitWith(ExitError, errors.New(summary))
	}
	fmt.Fprintln(a.streams.Err, summary)
	return nil
}

// plural is "1 error", "2 errors"; "1 policy", "3 policies".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if base, ok := strings.CutSuffix(what, "y"); ok {
		return fmt.Sprintf("%d %sies", n, base)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// linter collects what the files hold and the findings about it.
type linter struct {
	findings []finding
	// policies are those of the policy files that parsed; nil if there
	// were none, so that Deployments are not checked against them.
	policies    map[string]*rollout.Policy
	policyFiles int
	policyCount int
	badPolicies bool
	deployments []deploymentIn
	optedIn     int
}

type deploymentIn struct {
	file string
	d    *appsv1.Deployment
}

func (l *linter) add(f finding) { l.findings = append(l.findings, f) }

func (l *linter) count(severity string) int {
	n := 0
	for _, f := range l.findings {
		if f.Severity == severity {
			n++
		}
	}
	return n
}

func (l *linter) summary() string {
	parts := []string{plural(l.policyFiles, "policy file"), plural(len(l.deployments), "Deployment")}
	if l.policyCount > 0 {
		parts[0] += fmt.Sprintf(" (%s)", plural(l.policyCount, "policy"))
	}
	if len(l.deployments) > 0 {
		parts[1] += fmt.Sprintf(" (%d opted in)", l.optedIn)
	}
	return strings.Join(parts, ", ")
}

// file reads one file's documents.
func (l *linter) file(name string, data []byte) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			l.add(finding{File: name, Severity: severityError, Message: fmt.Sprintf("not YAML: %v", err)})
			return
		}
		l.document(name, doc)
	}
}

// document reads one YAML document by its content.
func (l *linter) document(file string, doc []byte) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		l.add(finding{File: file, Severity: severityError, Message: fmt.Sprintf("not a YAML mapping: %v", err)})
		return
	}
	if obj == nil {
		return // only comments
	}
	kind, _ := obj["kind"].(string)
	switch {
	case kind == "":
		if _, ok := obj["policies"]; !ok {
			l.add(finding{File: file, Severity: severityError, Message: "neither a policy file (no policies:) nor a Kubernetes object (no kind:)"})
			return
		}
		l.policyFile(file, "", "", doc)
	case kind == "ConfigMap":
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal(doc, &cm); err != nil {
			l.add(finding{File: file, Object: "ConfigMap", Severity: severityError, Message: err.Error()})
			return
		}
		if data, ok := cm.Data[policiesKey]; ok {
			l.policyFile(file, "ConfigMap "+qualified(cm.ObjectMeta), "data["+policiesKey+"]", []byte(data))
		}
	case kind == "Deployment":
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal(doc, d); err != nil {
			l.add(finding{File: file, Object: "Deployment", Severity: severityError, Message: err.Error()})
			return
		}
		l.deployments = append(l.deployments, deploymentIn{file: file, d: d})
	case strings.HasSuffix(kind, "List"):
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := yaml.Unmarshal(doc, &list); err != nil {
			l.add(finding{File: file, Object: kind, Severity: severityError, Message: err.Error()})
			return
		}
		for _, item := range list.Items {
			l.document(file, item)
		}
	}
}

func qualified(m metav1.ObjectMeta) string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// policyFile parses a policy file as the engine does.
func (l *linter) policyFile(file, object, field string, data []byte) {
	l.policyFiles++
	policies, err := rollout.ParseConfig(data)
	if err != nil {
		l.badPolicies = true
		for _, e := range leaves(err) {
			l.add(finding{File: file, Object: object, Field: field, Severity: severityError, Message: e})
		}
		return
	}
	if l.policies == nil {
		l.policies = map[string]*rollout.Policy{}
	}
	maps.Copy(l.policies, policies)
	l.policyCount += len(policies)
}

// leaves are the messages of a (joined) error, one problem each.
func leaves(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// finish checks the Deployments, against the policies read from every
// file, and orders the findings by file.
func (l *linter) finish() {
	if l.badPolicies {
		l.policies = nil // nothing reliable to check against
	}
	for _, in := range l.deployments {
		l.deployment(in.file, in.d)
	}
	if l.policyFiles == 0 && len(l.deployments) == 0 && len(l.findings) == 0 {
		l.add(finding{File: "-f", Severity: severityError, Message: "nothing to lint: no policy file and no Deployment found"})
	}
	order := map[string]int{}
	for _, f := range l.findings {
		if _, ok := order[f.File]; !ok {
			order[f.File] = len(order)
		}
	}
	slices.SortStableFunc(l.findings, func(x, y finding) int { return order[x.File] - order[y.File] })
}

// deployment checks a Deployment's annotations field by field, as the
// engine resolves them (rollout/engine/resolve.go).
func (l *linter) deployment(file string, d *appsv1.Deployment) {
	object := "Deployment " + qualified(d.ObjectMeta)
	add := func(severity, key, msg string) {
		field := "metadata.annotations"
		if key != "" {
			field += "[" + key + "]"
		}
		l.add(finding{File: file, Object: object, Field: field, Severity: severity, Message: msg})
	}
	fieldErr := func(err error) {
		if fe, ok := errors.AsType[*rollout.FieldError](err); ok {
			add(severityError, strings.TrimPrefix(fe.Field, "annotation "), fe.Err.Error())
			return
		}
		add(severityError, "", err.Error())
	}
	for _, k := range slices.Sorted(maps.Keys(d.Spec.Template.Annotations)) {
		if strings.HasPrefix(k, "fledge.dev/") {
			l.add(finding{File: file, Object: object, Field: "spec.template.metadata.annotations[" + k + "]", Severity: severityWarning,
				Message: "fledge reads the Deployment's own annotations (metadata.annotations), not its pod template's: move it there"})
		}
	}
	ann := d.Annotations
	policy, optedIn := ann[rollout.AnnotationRollout]
	if !optedIn {
		if slices.ContainsFunc(slices.Collect(maps.Keys(ann)), func(k string) bool { return strings.HasPrefix(k, "fledge.dev/") }) {
			add(severityWarning, "", "fledge.dev/ annotations without "+rollout.AnnotationRollout+": fledge ignores this Deployment")
		}
		return
	}
	l.optedIn++
	var p *rollout.Policy
	switch {
	case strings.TrimSpace(policy) == "":
		add(severityError, rollout.AnnotationRollout, "names no policy")
	case l.policies != nil:
		if p = l.policies[policy]; p == nil {
			add(severityError, rollout.AnnotationRollout, fmt.Sprintf("no policy %s in the policy file (it has %s)", rollout.Bounded(policy), strings.Join(slices.Sorted(maps.Keys(l.policies)), ", ")))
		}
	}
	if v, ok := ann[rollout.AnnotationVirtualService]; ok {
		if _, _, err := rollout.ParseVirtualService(v); err != nil {
			fieldErr(err)
		}
	}
	overridesOK := true
	for _, key := range []string{rollout.AnnotationStepWeights, rollout.AnnotationMaxWeight, rollout.AnnotationInterval} {
		if v, ok := ann[key]; ok {
			if _, err := rollout.ParseOverrides(map[string]string{key: v}); err != nil {
				fieldErr(err)
				overridesOK = false
			}
		}
	}
	if o, err := rollout.ParseOverrides(ann); overridesOK && err == nil && p != nil {
		if _, err := p.Effective(o); err != nil {
			fieldErr(err)
		}
	}
	if _, ok := ann[rollout.AnnotationAction]; ok {
		if _, _, err := rollout.ParseAction(ann); err != nil {
			fieldErr(err)
		} else {
			// fledge removes it once acted on; each apply writes it again.
			add(severityWarning, rollout.AnnotationAction, "a one-off request in a manifest is made again by every apply of it: use fledgectl promote, abort, pause or resume")
		}
	}
	for _, e := range leafErrors(rollout.UnknownAnnotations(ann)) {
		if fe, ok := errors.AsType[*rollout.FieldError](e); ok {
			add(severityWarning, strings.TrimPrefix(fe.Field, "annotation "), fe.Err.Error())
		}
	}
}

// leafErrors are the errors a joined error holds.
func leafErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
