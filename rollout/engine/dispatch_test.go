package engine

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
	"github.com/fledgehq/fledge/webhooks/hookclient"
)

// A hook's metadata may hold a secret: the status the decision writes
// keeps the delivery without it, and the body the dispatcher sends, signed,
// carries it.
func TestADeliverySendsTheHookMetadataTheStatusDoesNotHold(t *testing.T) {
	type received struct {
		body      []byte
		signature string
	}
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- received{body, r.Header.Get(webhooks.HeaderSignature)}
	}))
	defer srv.Close()

	policies, err := rollout.ParseConfig([]byte(`
hookNetworks: [127.0.0.0/8]
webhookSecret: {name: hooks, key: hmac}
policies:
  p:
    steps: [10, 50]
    interval: 1m
    metrics: [{name: success-rate, min: 0.9}]
    webhooks:
    - {name: audit, type: event, url: '` + srv.URL + `/audit', metadata: {token: s3cret}}
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	started := metav1.NewTime(now.Add(-time.Minute))
	d := rollout.Decide(rollout.Input{
		Now: now, Policy: policies["p"],
		Status: v1alpha1.FlightStatus{
			Phase: v1alpha1.PhaseProgressing, StableRevision: "r1", CanaryRevision: "r2", Steps: []int32{10, 50},
			CanaryWeight: 10, RevisionStartedAt: &started, StepStartedAt: &started,
		},
		Observed: rollout.Observed{
			DesiredRevision: "r2", DeploymentRevision: "r1", DeploymentSettled: true, DeploymentPaused: true,
			CanaryRevision: "r2", CanaryReplicas: 1, CanaryReady: true, Weights: traffic.Weights{Stable: 90, Canary: 10},
		},
		Checks: []analysis.Check{{Metric: "success-rate", Outcome: analysis.Pass, Value: new(1.0), Samples: 400}},
	})
	status, err := json.Marshal(d.Status)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(status), "s3cret") {
		t.Errorf("the status holds the hook's metadata:\n%s", status)
	}
	var deliver *rollout.Deliver
	for _, a := range d.Actions {
		if del, ok := a.(rollout.Deliver); ok && del.Delivery.Channel == "hook:audit" {
			deliver = &del
		}
	}
	if deliver == nil {
		t.Fatalf("actions %v: want a delivery to hook:audit (status message %q)", d.Actions, d.Status.Message)
	}

	x := &Dispatcher{
		Client: hookclient.New(),
		Secrets: &Secrets{Namespace: "fledge-system", Kube: fake.NewClientset(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "fledge-system", Name: "hooks"}, Data: map[string][]byte{"hmac": []byte("key")},
		})},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if retry, err := x.Deliver(ctx, *deliver); err != nil {
		t.Fatalf("Deliver: %v (retryable %t)", err, retry)
	}
	r := <-got
	if err := webhooks.Verify([]byte("key"), r.signature, r.body, time.Now(), time.Minute); err != nil {
		t.Errorf("the delivery's signature: %v", err)
	}
	var p webhooks.Payload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if p.Metadata["token"] != "s3cret" || p.DeliveryID != deliver.Delivery.ID || p.Hook != "audit" {
		t.Errorf("the hook received %s: want the delivery %s with the hook's metadata (token s3cret)", r.body, deliver.Delivery.ID)
	}
}
