package flagd

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fledgehq/fledge/flags"
)

func gateDoc(v string) string {
	return `{"flags":{"freeze-lifted":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"` + v + `"}}}`
}

// A gate answers from the ConfigMap's current version at once: no look
// after a change may see the document from before it.
func TestConfigMapGatesAnswerFromTheCurrentVersion(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	g := NewConfigMapGates("fledge-system", corelisters.NewConfigMapLister(indexer), 0)
	t.Cleanup(func() { g.Close(context.Background()) })
	rc := flags.RolloutContext{App: "web", Namespace: "shop"}
	eval := func() flags.GateResult { return g.Evaluate(t.Context(), "gates", "flags.json", "freeze-lifted", rc) }

	if r := eval(); r.Verdict != flags.Unreadable || !strings.Contains(r.Reason, "configmap fledge-system/gates key flags.json: not found") {
		t.Errorf("no ConfigMap: %+v, want Unreadable naming it", r)
	}
	put := func(rv, doc string) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "gates", Namespace: "fledge-system", ResourceVersion: rv}, Data: map[string]string{"flags.json": doc}}
		if err := indexer.Update(cm); err != nil {
			t.Fatal(err)
		}
	}
	for i, step := range []struct {
		doc  string
		want flags.Verdict
	}{
		{gateDoc("off"), flags.Closed},
		{gateDoc("on"), flags.Open},
		{gateDoc("off"), flags.Closed},
		{`{"flags": {`, flags.Unreadable},
		{gateDoc("on"), flags.Open},
	} {
		put(string(rune('1'+i)), step.doc)
		if r := eval(); r.Verdict != step.want {
			t.Errorf("version %d: %+v, want %s", i+1, r, step.want)
		}
	}
	put("9", `{"flags": {}}`)
	if r := eval(); r.Verdict != flags.Unreadable || !strings.Contains(r.Reason, "not in the flag source") {
		t.Errorf("flag gone: %+v, want Unreadable", r)
	}
}
