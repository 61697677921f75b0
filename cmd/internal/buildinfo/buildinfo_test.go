package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/common/version"
)

// keep restores prometheus/common/version's record after a test changes it.
func keep(t *testing.T) {
	v, d := version.Version, version.BuildDate
	t.Cleanup(func() { version.Version, version.BuildDate = v, d })
}

func TestABuildInACheckoutIsDevelWithItsCommitsTime(t *testing.T) {
	keep(t)
	version.Version, version.BuildDate = "", ""
	fill(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
	}}, true)
	if version.Version != Devel || version.BuildDate != "2026-12-01T10:00:00Z" {
		t.Errorf("version %q, date %q; want %q, the commit's time", version.Version, version.BuildDate, Devel)
	}
}

func TestAnInstallAtATagIsThatTag(t *testing.T) {
	keep(t)
	version.Version, version.BuildDate = "", ""
	fill(&debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, true)
	if version.Version != "v0.4.0" {
		t.Errorf("version %q, want v0.4.0", version.Version)
	}
}

func TestLdflagsWin(t *testing.T) {
	keep(t)
	version.Version, version.BuildDate = "v1.2.3", "2026-01-02T03:04:05Z"
	fill(&debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}, Settings: []debug.BuildSetting{{Key: "vcs.time", Value: "2020-01-01T00:00:00Z"}}}, true)
	if version.Version != "v1.2.3" || version.BuildDate != "2026-01-02T03:04:05Z" {
		t.Errorf("version %q, date %q: -ldflags -X values were overwritten", version.Version, version.BuildDate)
	}
	if l := Line("fledge"); !strings.HasPrefix(l, "fledge v1.2.3 (revision ") || !strings.Contains(l, "built 2026-01-02T03:04:05Z") {
		t.Errorf("Line = %q", l)
	}
	if r := Response(); r.GetVersion() != "v1.2.3" || r.GetPlatform() != version.GoOS+"/"+version.GoArch {
		t.Errorf("Response = %v", r)
	}
}
