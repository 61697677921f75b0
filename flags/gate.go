package flags

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	flagd "github.com/open-feature/go-sdk-contrib/providers/flagd/pkg"
	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
)

// A flag gate is an OpenFeature boolean flag that a rollout asks before
// every traffic increase and before promotion, with the rollout as the
// evaluation context: a release freeze, a kill switch, a team's hold. A
// false holds the rollout; so does a flag that cannot be read, since a
// gate that cannot be read must never let a rollout through.

// Verdict is a gate's answer.
type Verdict string

const (
	// Open: the flag evaluated to true.
	Open Verdict = "Open"
	// Closed: the flag evaluated to false.
	Closed Verdict = "Closed"
	// Unreadable: no answer (the source is broken, the flag is missing
	// or not a boolean, the provider is not ready, or it timed out).
	Unreadable Verdict = "Unreadable"
)

// GateResult is one gate flag's evaluation.
type GateResult struct {
	Flag    string
	Verdict Verdict
	// Variant is the variant served, when there was an answer.
	Variant string
	// Reason is OpenFeature's resolution reason (TARGETING_MATCH, STATIC,
	// ...) or, when Unreadable, what went wrong.
	Reason string
}

// Gates evaluates gate flags with flagd's in-process provider through the
// OpenFeature SDK, from one Source. It is safe for concurrent use.
type Gates struct {
	api     *openfeature.EvaluationAPI
	client  *openfeature.Client
	src     *Source
	timeout time.Duration
}

// DefaultGateTimeout bounds one evaluation.
const DefaultGateTimeout = 2 * time.Second

// NewGates starts an OpenFeature API of its own (not the global one) with
// flagd's in-process provider reading src, and waits until it is ready or
// ctx ends. Close releases it.
func NewGates(ctx context.Context, src *Source, timeout time.Duration) (*Gates, error) {
	api, client, err := NewClient(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("flag gates: %w", err)
	}
	if timeout <= 0 {
		timeout = DefaultGateTimeout
	}
	return &Gates{api: api, client: client, src: src, timeout: timeout}, nil
}

// NewClient starts an OpenFeature API of its own (isolated from the
// global singleton, so that several sources can coexist in one process)
// whose provider is flagd's in-process resolver reading src, as an app
// that reads a flags ConfigMap through the flagd provider would. It
// returns once the provider is ready, or ctx ends. Shut the API down when
// done.
func NewClient(ctx context.Context, src *Source) (*openfeature.EvaluationAPI, *openfeature.Client, error) {
	p, err := flagd.NewProvider(
		flagd.WithInProcessResolver(),
		flagd.WithCustomSyncProviderAndUri(src, src.URI()),
		flagd.WithLogger(logr.Discard()),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("flagd provider for %s: %w", src.URI(), err)
	}
	api := isolated.NewAPI()
	if err := api.SetProviderAndWait(ctx, p); err != nil {
		_ = api.Shutdown(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("flagd provider for %s: %w", src.URI(), err)
	}
	return api, api.NewClient(), nil
}

// Close shuts the provider down.
func (g *Gates) Close(ctx context.Context) error { return g.api.Shutdown(ctx) }

// Evaluate evaluates one gate flag for a rollout. It never returns Open
// unless the flag was read and is true.
func (g *Gates) Evaluate(ctx context.Context, flag string, ec RolloutContext) GateResult {
	res := GateResult{Flag: flag, Verdict: Unreadable}
	if err := g.src.Err(); err != nil {
		res.Reason = "flag source: " + err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	type answer struct {
		d   openfeature.BooleanEvaluationDetails
		err error
	}
	done := make(chan answer, 1)
	go func() {
		d, err := g.client.BooleanValueDetails(ctx, flag, false, ec.evaluationContext())
		done <- answer{d, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-ctx.Done():
		res.Reason = fmt.Sprintf("no answer within %s", g.timeout)
		return res
	}
	d := a.d
	switch {
	case d.ErrorCode != "":
		res.Reason = describeError(flag, d.ErrorCode, d.ErrorMessage)
	case a.err != nil:
		res.Reason = a.err.Error()
	case d.Reason == openfeature.ErrorReason || d.Reason == openfeature.DisabledReason:
		res.Reason = fmt.Sprintf("flag %q: %s", flag, d.Reason)
	default:
		res.Variant, res.Reason = d.Variant, string(d.Reason)
		res.Verdict = Closed
		if d.Value {
			res.Verdict = Open
		}
	}
	return res
}

func describeError(flag string, code openfeature.ErrorCode, msg string) string {
	switch code {
	case openfeature.FlagNotFoundCode:
		return fmt.Sprintf("flag %q: not in the flag source", flag)
	case openfeature.TypeMismatchCode:
		return fmt.Sprintf("flag %q: not a boolean flag", flag)
	case openfeature.ProviderNotReadyCode:
		return "the flag provider is not ready"
	}
	if msg == "" {
		return fmt.Sprintf("flag %q: %s", flag, code)
	}
	return fmt.Sprintf("flag %q: %s: %s", flag, code, msg)
}

// RolloutContext is what a gate flag's targeting can look at: the
// rollout, as OpenFeature evaluation context attributes of the same names
// (the targeting key is "<namespace>/<app>").
type RolloutContext struct {
	App, Namespace, Policy string
	Revision               string
	Images                 []string
	// Step is the 1-based stage about to be left (0 before traffic),
	// Weight the canary's share now and NextWeight after the increase
	// (100 before promotion).
	Step, Weight, NextWeight int
	// Cohort names the cohort stage being left, if it is one.
	Cohort string
	// Promotion: the gate is asked before promoting.
	Promotion bool
}

func (c RolloutContext) evaluationContext() openfeature.EvaluationContext {
	images := make([]any, len(c.Images))
	for i, im := range c.Images {
		images[i] = im
	}
	return openfeature.NewEvaluationContext(c.Namespace+"/"+c.App, map[string]any{
		"app": c.App, "namespace": c.Namespace, "policy": c.Policy,
		"revision": c.Revision, "images": images,
		"step": c.Step, "weight": c.Weight, "nextWeight": c.NextWeight,
		"cohort": c.Cohort, "promotion": c.Promotion,
	})
}
