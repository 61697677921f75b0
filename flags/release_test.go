package flags

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const doc = `{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false, "dark": false}, "defaultVariant": "off"},
    "banner": {"state": "ENABLED", "variants": {"red": "red", "blue": "blue"}, "defaultVariant": "red",
               "targeting": {"if": [{">=": [{"var": "spend"}, 100]}, "blue", "red"]}}
  }
}`

func flagOf(t *testing.T, doc []byte, key string) map[string]any {
	t.Helper()
	var top struct {
		Schema string                    `json:"$schema"`
		Flags  map[string]map[string]any `json:"flags"`
	}
	if err := json.Unmarshal(doc, &top); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	if top.Schema == "" {
		t.Error("$schema was dropped")
	}
	return top.Flags[key]
}

func TestRewriteServesEachStage(t *testing.T) {
	link := Link{Flag: "new-checkout"}
	tests := []struct {
		name        string
		stage       Stage
		wantDefault string
		wantRule    any // nil: no targeting
	}{
		{"a cohort stage serves on to the cohort only", Stage{Kind: StageCohort, Attribute: "tier", Value: "beta"}, "off",
			map[string]any{"if": []any{map[string]any{"==": []any{map[string]any{"var": "tier"}, "beta"}}, "on", "off"}}},
		{"a weighted step serves on to its share of users, bucketed by key", Stage{Kind: StageWeighted, Weight: 20}, "off",
			map[string]any{"fractional": []any{map[string]any{"var": "targetingKey"}, []any{"on", 20.0}, []any{"off", 80.0}}}},
		{"no weight serves off to everyone", Stage{Kind: StageWeighted, Weight: 0}, "off", nil},
		{"all the weight serves on to everyone", Stage{Kind: StageWeighted, Weight: 100}, "on", nil},
		{"a rollback turns the flag off", Stage{Kind: StageOff}, "off", nil},
		{"a promotion leaves the policy's final state", Stage{Kind: StageFinal, Variant: "dark"}, "dark", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Rewrite([]byte(doc), link, tt.stage)
			if err != nil {
				t.Fatal(err)
			}
			f := flagOf(t, out, "new-checkout")
			if f["defaultVariant"] != tt.wantDefault {
				t.Errorf("defaultVariant %v, want %s", f["defaultVariant"], tt.wantDefault)
			}
			if diff := cmp.Diff(tt.wantRule, f["targeting"]); diff != "" {
				t.Errorf("targeting (-want +got):\n%s", diff)
			}
			// The other flag is untouched.
			before, after := flagOf(t, []byte(doc), "banner"), flagOf(t, out, "banner")
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("another flag changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestRewriteMovesAUserOnlyOneWay(t *testing.T) {
	// From one weighted step to the next, the document differs in the
	// weights alone: same bucketing attribute, same variant order, so a
	// user who had the feature keeps it as the share grows.
	a, _ := Rewrite([]byte(doc), Link{Flag: "new-checkout", BucketBy: "userId"}, Stage{Kind: StageWeighted, Weight: 10})
	b, _ := Rewrite([]byte(doc), Link{Flag: "new-checkout", BucketBy: "userId"}, Stage{Kind: StageWeighted, Weight: 50})
	ra, rb := flagOf(t, a, "new-checkout")["targeting"], flagOf(t, b, "new-checkout")["targeting"]
	want := func(w float64) any {
		return map[string]any{"fractional": []any{map[string]any{"var": "userId"}, []any{"on", w}, []any{"off", 100 - w}}}
	}
	if diff := cmp.Diff(want(10), ra); diff != "" {
		t.Errorf("10%%: %s", diff)
	}
	if diff := cmp.Diff(want(50), rb); diff != "" {
		t.Errorf("50%%: %s", diff)
	}
}

func TestRewriteNamesWhatIsWrong(t *testing.T) {
	tests := []struct {
		name, doc string
		link      Link
		stage     Stage
		want      string
	}{
		{"a document that is not JSON", `{"flags": `, Link{Flag: "x"}, Stage{Kind: StageOff}, "not a JSON object"},
		{"a document without flags", `{"flag": {}}`, Link{Flag: "x"}, Stage{Kind: StageOff}, "flags: want an object"},
		{"a flag that does not exist", doc, Link{Flag: "old-checkout"}, Stage{Kind: StageOff}, `flag "old-checkout": not in the document`},
		{"a flag without the link's variants", doc, Link{Flag: "banner"}, Stage{Kind: StageOff}, `flag "banner": variants: no variant "on"`},
		{"a final variant the flag lacks", doc, Link{Flag: "new-checkout"}, Stage{Kind: StageFinal, Variant: "purple"}, `variants: no variant "purple"`},
		{"a disabled flag", strings.Replace(doc, `"state": "ENABLED", "variants": {"on"`, `"state": "DISABLED", "variants": {"on"`, 1), Link{Flag: "new-checkout"}, Stage{Kind: StageOff}, "must be ENABLED"},
		{"a weight above 100", doc, Link{Flag: "new-checkout"}, Stage{Kind: StageWeighted, Weight: 120}, "outside 0..100"},
		{"a cohort without a value", doc, Link{Flag: "new-checkout"}, Stage{Kind: StageCohort, Attribute: "tier"}, "attribute and a value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Rewrite([]byte(tt.doc), tt.link, tt.stage)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q (output %s)", err, tt.want, out)
			}
		})
	}
}

func TestRewriteKeepsJSONLogicReadable(t *testing.T) {
	out, err := Rewrite([]byte(doc), Link{Flag: "new-checkout"}, Stage{Kind: StageOff})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `">="`) {
		t.Errorf("\">=\" was escaped in the document people read:\n%s", out)
	}
}
