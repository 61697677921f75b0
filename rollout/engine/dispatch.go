package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
	"github.com/fledgehq/fledge/webhooks/hookclient"
	"github.com/fledgehq/fledge/webhooks/slack"
)

// Dispatcher performs what the Runner is asked: hook calls with
// webhooks.Client, signed with the policy's Secret, and Slack messages
// with webhooks/slack. It is the only place where the decision core's
// requests meet the network.
type Dispatcher struct {
	Client  *hookclient.Client
	Secrets *Secrets
}

// Call makes one hook call. A missing signing secret is an error answer:
// fledge never calls a hook unsigned.
func (x *Dispatcher) Call(ctx context.Context, a rollout.CallHook) rollout.CallResult {
	secret, err := x.Secrets.Get(ctx, a.Secret)
	if err != nil {
		return rollout.CallResult{State: v1alpha1.CallError, Message: "webhook signing key: " + err.Error(), At: time.Now()}
	}
	r := x.Client.Do(ctx, hookclient.Call{
		URL: a.Hook.URL, Timeout: a.Hook.Timeout, Retries: a.Hook.Retries, Secret: secret,
		AllowLinkLocal: a.Hook.AllowLinkLocal, Networks: a.Hook.Networks, Payload: a.Payload,
	})
	state := v1alpha1.CallError
	switch r.Outcome {
	case hookclient.OK:
		state = v1alpha1.CallOK
	case hookclient.Rejected:
		state = v1alpha1.CallRejected
	}
	return rollout.CallResult{State: state, Status: r.Status, Message: r.Message, Load: r.Load, Attempts: r.Attempts, At: time.Now()}
}

// Deliver makes one delivery attempt; it reports whether a failure may be
// retried.
func (x *Dispatcher) Deliver(ctx context.Context, a rollout.Deliver) (bool, error) {
	switch {
	case a.Slack != nil && a.Delivery.Notification != nil:
		return x.slack(ctx, a.Slack, *a.Delivery.Notification)
	case a.Hook != nil && a.Delivery.Payload != nil:
		secret, err := x.Secrets.Get(ctx, a.Secret)
		if err != nil {
			return true, fmt.Errorf("webhook signing key: %w", err)
		}
		h := a.Hook
		r := x.Client.Do(ctx, hookclient.Call{
			URL: h.URL, Timeout: h.Timeout, Retries: 0, Secret: secret, AllowLinkLocal: h.AllowLinkLocal, Networks: h.Networks, Payload: *a.Delivery.Payload,
		})
		switch {
		case r.Outcome == hookclient.OK:
			return false, nil
		case r.Outcome == hookclient.Rejected && r.Status >= 400 && r.Status < 500 && r.Status != 429:
			return false, errors.New(r.Message) // the hook refuses it: asking again changes nothing
		default:
			return true, errors.New(r.Message)
		}
	}
	return false, errors.New("nothing to deliver")
}

func (x *Dispatcher) slack(ctx context.Context, s *rollout.Slack, n webhooks.Notification) (bool, error) {
	data, err := x.Secrets.Data(ctx, s.Secret)
	if err != nil {
		return true, fmt.Errorf("slack: %w", err) // a Secret may be created late
	}
	cfg, err := slack.ConfigFromSecret(data)
	if err != nil {
		return false, fmt.Errorf("secret %s/%s: %w", x.Secrets.Namespace, s.Secret, err)
	}
	if s.Channel != "" && cfg.Token != "" {
		cfg.Channel = s.Channel
	}
	sender, err := slack.New(cfg)
	if err != nil {
		return false, fmt.Errorf("secret %s/%s: %w", x.Secrets.Namespace, s.Secret, err)
	}
	if err := sender.Send(ctx, n); err != nil {
		return slack.IsRetryable(err), err
	}
	return false, nil
}
