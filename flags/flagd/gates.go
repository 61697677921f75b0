package flagd

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	flagdprovider "github.com/open-feature/go-sdk-contrib/providers/flagd/pkg"
	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"

	"github.com/fledgehq/fledge/flags"
)

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
	p, err := flagdprovider.NewProvider(
		flagdprovider.WithInProcessResolver(),
		flagdprovider.WithCustomSyncProviderAndUri(src, src.URI()),
		flagdprovider.WithLogger(logr.Discard()),
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
func (g *Gates) Evaluate(ctx context.Context, flag string, ec flags.RolloutContext) flags.GateResult {
	res := flags.GateResult{Flag: flag, Verdict: flags.Unreadable}
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
		d, err := g.client.BooleanValueDetails(ctx, flag, false, evaluationContext(ec))
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
		res.Verdict = flags.Closed
		if d.Value {
			res.Verdict = flags.Open
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

// evaluationContext is a rollout as OpenFeature evaluation context.
func evaluationContext(c flags.RolloutContext) openfeature.EvaluationContext {
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
