// Package buildinfo is what a fledge binary knows of its own build, for
// --version, `fledgectl version`, the API's Version call and the
// fledge_build_info metric.
//
// It is prometheus/common/version's record, as Prometheus's own binaries
// keep it: the Makefile sets its Version, Revision and BuildDate with
// -ldflags -X (make images, make build-release); a plain `go build` or `go
// install` leaves them blank, and they are filled here from what the Go
// toolchain recorded in the binary (the module's version when installed at
// a tag, the VCS commit and its time when built in a checkout).
package buildinfo

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/common/version"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// Devel is the version of a build outside a release.
const Devel = "devel"

func init() { fill(debug.ReadBuildInfo()) }

// fill sets what -ldflags left blank from the toolchain's record.
func fill(info *debug.BuildInfo, ok bool) {
	if version.Version == "" {
		version.Version = Devel
		if ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
			version.Version = info.Main.Version
		}
	}
	if version.BuildDate == "" && ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.time" {
				version.BuildDate = s.Value
			}
		}
	}
}

// Line is one line for --version: program, release, commit, Go and
// platform.
func Line(program string) string {
	return fmt.Sprintf("%s %s (revision %s, built %s, %s, %s/%s)", program, version.Version, version.GetRevision(),
		orUnknown(version.BuildDate), version.GoVersion, version.GoOS, version.GoArch)
}

// Response is the API's answer to Version.
func Response() *rolloutpb.VersionResponse {
	return &rolloutpb.VersionResponse{
		Version:   version.Version,
		Revision:  version.GetRevision(),
		GoVersion: version.GoVersion,
		Platform:  version.GoOS + "/" + version.GoArch,
		BuildDate: version.BuildDate,
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
