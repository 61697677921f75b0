package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/traffic"
)

func TestParseConfigReadsCohortsStickyGatesAndReleaseFlags(t *testing.T) {
	got, err := ParseConfig([]byte(`
flagSource: {configMap: fledge-gates}
policies:
  checkout:
    steps: [20, 50]
    interval: 30s
    cohorts:
    - {name: employees, header: X-Employee, value: "true"}
    - {name: beta, cookie: tier, value: beta, minDuration: 2m, minSamples: 200, attribute: tier}
    sticky: {}
    flagGates: [{flag: release-freeze-lifted}]
    releaseFlags:
    - {configMap: flags, flag: new-checkout}
    - {configMap: flags, key: other.json, flag: new-search, onVariant: enabled, offVariant: disabled, finalVariant: disabled, bucketBy: userId}
    metrics:
    - {name: success-rate, min: 0.99}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := got["checkout"]
	wantCohorts := []Cohort{
		{Name: "employees", Route: traffic.Cohort{Name: "employees", Header: "x-employee", Exact: "true"}, Attribute: "x-employee", Value: "true", MinDuration: 30 * time.Second},
		{Name: "beta", Route: traffic.CookieCohort("beta", "tier", "beta"), Attribute: "tier", Value: "beta", MinDuration: 2 * time.Minute, MinSamples: 200},
	}
	if diff := cmp.Diff(wantCohorts, p.Cohorts); diff != "" {
		t.Errorf("cohorts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&traffic.Sticky{Cookie: DefaultStickyCookie, MaxAge: 3600}, p.Sticky); diff != "" {
		t.Errorf("sticky (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"release-freeze-lifted"}, p.FlagGates); diff != "" {
		t.Errorf("gates (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&FlagSourceSpec{ConfigMap: "fledge-gates", Key: DefaultFlagKey}, p.FlagSource); diff != "" {
		t.Errorf("flag source (-want +got):\n%s", diff)
	}
	wantFlags := []ReleaseFlag{
		{ConfigMap: "flags", Key: DefaultFlagKey, Final: "on", Link: flags.Link{Flag: "new-checkout", On: "on", Off: "off", BucketBy: "targetingKey"}},
		{ConfigMap: "flags", Key: "other.json", Final: "disabled", Link: flags.Link{Flag: "new-search", On: "enabled", Off: "disabled", BucketBy: "userId"}},
	}
	if diff := cmp.Diff(wantFlags, p.ReleaseFlags); diff != "" {
		t.Errorf("release flags (-want +got):\n%s", diff)
	}
}

func TestParseConfigRejectsBadFlagSettingsByField(t *testing.T) {
	_, err := ParseConfig([]byte(`
policies:
  bad:
    steps: [20]
    cohorts:
    - {name: Beta, header: x-tier, value: beta}
    - {name: both, header: x-tier, cookie: tier, value: beta}
    - {name: rx, header: x-tier, regex: "(beta"}
    - {name: cookie-rx, cookie: tier, regex: "b.*"}
    - {name: short, header: x-tier, value: a, minDuration: 10ms}
    sticky: {cookie: "bad cookie"}
    flagGates: [{flag: freeze}, {flag: freeze}]
    releaseFlags:
    - {configMap: Flags, flag: "x y"}
    - {configMap: flags, flag: f, onVariant: same, offVariant: same}
    metrics:
    - {name: variant, query: 'sum(x{v={{ .OnVariant }}})', max: 1}
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`policies.bad.cohorts[0].name: "Beta"`,
		`policies.bad.cohorts[1]: give exactly one of header and cookie`,
		`policies.bad.cohorts[2].regex`,
		`policies.bad.cohorts[3].regex: only a header can be matched by regex`,
		`policies.bad.cohorts[4].minDuration: 10ms is shorter than 1s`,
		`policies.bad.sticky.cookie: "bad cookie" is not a cookie name`,
		`policies.bad.flagGates[1].flag: "freeze" appears twice`,
		`policies.bad.flagGates: flag gates need a flagSource`,
		`policies.bad.releaseFlags[0].configMap: "Flags" is not a ConfigMap name`,
		`policies.bad.releaseFlags[0].flag: "x y" is not a flag key`,
		`policies.bad.releaseFlags[1].offVariant: "same" is also the on-variant`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = ParseConfig([]byte(`
policies:
  novariant:
    steps: [20]
    metrics:
    - {name: variant, query: 'sum(x{v={{ .OnVariant }}})', max: 1}
`))
	if err == nil || !strings.Contains(err.Error(), "policies.novariant.metrics[0].query: uses .Flag, .OnVariant or .OffVariant, but the policy links no release flag") {
		t.Errorf("a variant query without a release flag: %v", err)
	}
	_, err = ParseConfig([]byte(`
policies:
  unquoted:
    steps: [20]
    releaseFlags: [{configMap: flags, flag: f, finalVariant: on}]
    metrics: [{name: success-rate, min: 0.9}]
`))
	if err == nil || !strings.Contains(err.Error(), "write variant names in quotes") {
		t.Errorf("an unquoted on: %v", err)
	}
	_, err = ParseConfig([]byte(`
policies:
  regex-flag:
    steps: [20]
    cohorts: [{name: beta, header: x-tier, regex: "beta|gamma"}]
    releaseFlags: [{configMap: flags, flag: f}]
    metrics: [{name: success-rate, min: 0.9}]
`))
	if err == nil || !strings.Contains(err.Error(), "policies.regex-flag.cohorts[0].regex: a regex cohort cannot be mirrored in release flags") {
		t.Errorf("a regex cohort with a release flag: %v", err)
	}
}
