package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/rollout/engine"
)

// fledge acts where it is told, and never cluster-wide by omission.
func TestNamespacesAreSaidExplicitly(t *testing.T) {
	for _, tc := range []struct {
		list    string
		all     bool
		want    []string
		wantErr string
	}{
		{list: "shop", want: []string{"shop"}},
		{list: " shop, cart ,,", want: []string{"shop", "cart"}},
		{all: true, want: engine.AllNamespaces},
		{wantErr: "say where fledge acts: --namespaces=shop,payments"},
		{list: ",", wantErr: "say where fledge acts"},
		{list: "shop", all: true, wantErr: "not both"},
		{list: "shop,Cart_1", wantErr: `--namespaces: "Cart_1" is not a namespace name`},
		{list: strings.Repeat("a", 300), wantErr: `"... (300 bytes) is not a namespace name`},
	} {
		got, err := namespacesOf(tc.list, tc.all)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("(%q, %v): error %v, want one with %q", tc.list, tc.all, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("(%q, %v): %v", tc.list, tc.all, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("(%q, %v) (-want +got):\n%s", tc.list, tc.all, diff)
		}
	}
}
