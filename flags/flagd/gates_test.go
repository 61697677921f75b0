package flagd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/flags"
)

const freezeDoc = `{"flags":{
  "release-freeze-lifted": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on",
    "targeting":{"if":[{"==":[{"var":"namespace"},"frozen"]},"off","on"]}},
  "color": {"state":"ENABLED","variants":{"red":"red","blue":"blue"},"defaultVariant":"red"}
}}`

func newGates(t *testing.T, doc string) (*Gates, *Source) {
	t.Helper()
	src := NewSource("test://gates/" + t.Name())
	if doc != "" {
		if err := src.Set([]byte(doc)); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	g, err := NewGates(ctx, src, time.Second)
	if err != nil {
		t.Fatalf("NewGates: %v", err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g, src
}

func TestGatesEvaluateWithTheRolloutAsContext(t *testing.T) {
	g, _ := newGates(t, freezeDoc)
	for _, tc := range []struct {
		ns   string
		want flags.Verdict
	}{{"shop", flags.Open}, {"frozen", flags.Closed}} {
		got := g.Evaluate(t.Context(), "release-freeze-lifted", flags.RolloutContext{App: "web", Namespace: tc.ns})
		if got.Verdict != tc.want {
			t.Errorf("namespace %s: %+v, want %s", tc.ns, got, tc.want)
		}
		if got.Reason != "TARGETING_MATCH" {
			t.Errorf("namespace %s: reason %q, want TARGETING_MATCH", tc.ns, got.Reason)
		}
	}
}

func TestGatesNeverOpenWithoutAnAnswer(t *testing.T) {
	g, src := newGates(t, freezeDoc)
	for _, tc := range []struct{ flag, reason string }{
		{"missing", `flag "missing": not in the flag source`},
		{"color", `flag "color": not a boolean flag`},
	} {
		got := g.Evaluate(t.Context(), tc.flag, flags.RolloutContext{App: "web", Namespace: "shop"})
		if got.Verdict != flags.Unreadable || got.Reason != tc.reason {
			t.Errorf("%s: %+v, want Unreadable: %s", tc.flag, got, tc.reason)
		}
	}
	// A broken document keeps the provider's last flags, but the gate
	// says it cannot read the source.
	if err := src.Set([]byte(`{"flags": {`)); err == nil {
		t.Fatal("Set accepted a truncated document")
	}
	got := g.Evaluate(t.Context(), "release-freeze-lifted", flags.RolloutContext{App: "web", Namespace: "shop"})
	if got.Verdict != flags.Unreadable || !strings.Contains(got.Reason, "flag source") {
		t.Errorf("broken source: %+v, want Unreadable naming the flag source", got)
	}
	// Fixed: readable again.
	if err := src.Set([]byte(strings.Replace(freezeDoc, `"frozen"`, `"shop"`, 1))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = g.Evaluate(t.Context(), "release-freeze-lifted", flags.RolloutContext{App: "web", Namespace: "shop"})
		if got.Verdict == flags.Closed || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got.Verdict != flags.Closed {
		t.Errorf("after the fix (shop frozen): %+v, want Closed", got)
	}
}

func TestGatesWithoutADocument(t *testing.T) {
	g, _ := newGates(t, "")
	got := g.Evaluate(t.Context(), "release-freeze-lifted", flags.RolloutContext{})
	if got.Verdict != flags.Unreadable || !strings.Contains(got.Reason, "no flag document") {
		t.Errorf("%+v, want Unreadable: no flag document", got)
	}
}

func TestValidate(t *testing.T) {
	for name, doc := range map[string]string{
		"truncated":      `{"flags": {`,
		"bad state":      `{"flags":{"f":{"state":"WHATEVER","variants":{"on":true,"off":false},"defaultVariant":"off"}}}`,
		"bad default":    `{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"maybe"}}}`,
		"mixed variants": `{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":"no"},"defaultVariant":"off"}}}`,
		"var weight":     `{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off","targeting":{"fractional":[{"var":"targetingKey"},["on",{"var":"w"}],["off",80]]}}}}`,
		"no flags":       `{}`,
	} {
		if err := Validate([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := Validate([]byte(freezeDoc)); err != nil {
		t.Errorf("valid document: %v", err)
	}
}

// BenchmarkGateEvaluate is one gate flag's evaluation through the
// OpenFeature client and flagd's in-process provider, with targeting.
func BenchmarkGateEvaluate(b *testing.B) {
	src := NewSource("test://gates/bench")
	if err := src.Set([]byte(freezeDoc)); err != nil {
		b.Fatal(err)
	}
	g, err := NewGates(b.Context(), src, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close(context.Background())
	rc := flags.RolloutContext{App: "web", Namespace: "shop", Revision: "abc", Images: []string{"example.com/web:v2"}, Step: 2, Weight: 20, NextWeight: 50}
	for b.Loop() {
		if r := g.Evaluate(b.Context(), "release-freeze-lifted", rc); r.Verdict != flags.Open {
			b.Fatalf("%+v", r)
		}
	}
}
