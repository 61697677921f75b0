//go:build e2e

package ship_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// imageLayout is what `oci-images inspect` prints of one image's OCI
// layout (e2e/tools/images/inspect.go).
type imageLayout struct {
	RefName     string            `json:"refName"`
	Digest      string            `json:"digest"`
	MediaType   string            `json:"mediaType"`
	Annotations map[string]string `json:"annotations"`
	Images      []struct {
		Platform string `json:"platform"`
		Digest   string `json:"digest"`
		Config   struct {
			Entrypoint []string          `json:"Entrypoint"`
			User       string            `json:"User"`
			Env        []string          `json:"Env"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
		Arch   string `json:"architecture"`
		Layers []struct {
			Size int64 `json:"size"`
		} `json:"layers"`
		Files []struct {
			Name string `json:"name"`
			Mode int64  `json:"mode"`
			UID  int    `json:"uid"`
			Size int64  `json:"size"`
		} `json:"files"`
	} `json:"images"`
}

var imageNames = []string{"fledge", "fledge-loadtester", "fledgectl"}

// makeImages runs what `make images` runs, into out, and returns its
// output.
func makeImages(t *testing.T, out string) string {
	t.Helper()
	cmd := exec.Command("bash", repoFile("e2e/tools/images.sh"))
	cmd.Env = append(os.Environ(), "OUT="+out, "BINARIES="+filepath.Join(out, "binaries"))
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("images.sh: %v\n%s", err, b)
	}
	return string(b)
}

func inspectImage(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	b, err := exec.Command(repoFile("bin/oci-images"), append([]string{"inspect", "--layout", dir}, args...)...).Output()
	if err != nil {
		t.Fatalf("inspect %s: %v", dir, err)
	}
	return b
}

func git(t *testing.T, args ...string) string {
	t.Helper()
	b, err := exec.Command("git", append([]string{"-C", repoFile(".")}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(b))
}

// TestImages builds the images twice, as `make images` does, and opens
// every one: both platforms, the non-root user, the entrypoint, the OCI
// labels naming this commit, Debian's CA bundle, and a binary that runs
// and says its version. Two builds of one commit must give one digest.
func TestImages(t *testing.T) {
	t.Parallel() // mostly compiling: let the sandbox's tests run meanwhile
	first, second := t.TempDir(), t.TempDir()
	t.Log(makeImages(t, first))
	makeImages(t, second)

	revision := git(t, "rev-parse", "HEAD")
	created := git(t, "log", "-1", "--format=%cI")
	for _, name := range imageNames {
		var a, b imageLayout
		if err := json.Unmarshal(inspectImage(t, filepath.Join(first, name)), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(inspectImage(t, filepath.Join(second, name)), &b); err != nil {
			t.Fatal(err)
		}
		if a.Digest != b.Digest {
			t.Errorf("%s: two builds of one commit gave %s and %s", name, a.Digest, b.Digest)
		}
		if a.MediaType != "application/vnd.oci.image.index.v1+json" {
			t.Errorf("%s: media type %s, want an OCI index", name, a.MediaType)
		}
		var platforms []string
		for _, img := range a.Images {
			platforms = append(platforms, img.Platform)
			if img.Platform != "linux/"+img.Arch {
				t.Errorf("%s: the %s manifest's config says %s", name, img.Platform, img.Arch)
			}
			if want := []string{"/usr/local/bin/" + name}; !slices.Equal(img.Config.Entrypoint, want) {
				t.Errorf("%s %s: entrypoint %v, want %v", name, img.Platform, img.Config.Entrypoint, want)
			}
			if img.Config.User != "65532:65532" {
				t.Errorf("%s %s: user %q, want the non-root 65532:65532", name, img.Platform, img.Config.User)
			}
			l := img.Config.Labels
			if !strings.HasPrefix(l["org.opencontainers.image.revision"], revision) || l["org.opencontainers.image.version"] != a.RefName ||
				l["org.opencontainers.image.source"] == "" || l["org.opencontainers.image.title"] != name {
				t.Errorf("%s %s: labels %v, want revision %s, version %s, a source and title %s", name, img.Platform, l, revision, a.RefName, name)
			}
			if got := l["org.opencontainers.image.created"]; !sameTime(got, created) {
				t.Errorf("%s %s: created %q, want the commit's time %s", name, img.Platform, got, created)
			}
			files := map[string]int64{}
			for _, f := range img.Files {
				files[f.Name] = f.Size
				if f.UID != 0 && f.Name != "home/nonroot" {
					t.Errorf("%s %s: %s is owned by %d: only the user's home may be", name, img.Platform, f.Name, f.UID)
				}
			}
			if files["etc/ssl/certs/ca-certificates.crt"] < 100_000 {
				t.Errorf("%s %s: CA bundle of %d bytes, want Debian's (about 200 KB)", name, img.Platform, files["etc/ssl/certs/ca-certificates.crt"])
			}
			if files["usr/local/bin/"+name] == 0 {
				t.Errorf("%s %s: no /usr/local/bin/%s", name, img.Platform, name)
			}
			if _, ok := files["etc/passwd"]; !ok {
				t.Errorf("%s %s: no /etc/passwd naming the user", name, img.Platform)
			}
			var size int64
			for _, layer := range img.Layers {
				size += layer.Size
			}
			t.Logf("%s %s: %.1f MiB compressed", name, img.Platform, float64(size)/(1<<20))
		}
		slices.Sort(platforms)
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("%s: platforms %v, want linux/amd64 and linux/arm64", name, platforms)
		}

		// The binary, taken out of the image, runs and knows its build.
		bin := filepath.Join(t.TempDir(), name)
		inspectImage(t, filepath.Join(first, name), "--extract", "usr/local/bin/"+name, "--platform", "linux/amd64", "--to", bin)
		flag := "--version"
		out, err := exec.Command(bin, flag).CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", name, flag, err, out)
			continue
		}
		if !strings.Contains(string(out), a.RefName) || !strings.Contains(string(out), revision) {
			t.Errorf("%s %s printed %q, want version %s and revision %s", name, flag, out, a.RefName, revision)
		}
	}
}

// sameTime compares two RFC 3339 times that may be in other zones.
func sameTime(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339, a)
	tb, err2 := time.Parse(time.RFC3339, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}
