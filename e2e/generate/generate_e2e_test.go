//go:build e2e

package generate_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGeneratedFilesAreCurrent regenerates everything in a copy of the
// tree as it stands (committed or not, ignored files left out) and
// compares: a type, marker, .proto or dashboard program
// (e2e/tools/dashboards) edited without `make generate` fails here, with
// the files to regenerate.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	files := trackedFiles(t, root)
	cp := t.TempDir()
	for _, f := range files {
		copyFile(t, filepath.Join(root, f), filepath.Join(cp, f))
	}

	cmd := exec.Command("bash", filepath.Join(cp, "e2e", "tools", "generate.sh"), cp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, out)
	}

	var stale []string
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(cp, f))
		if err != nil || !bytes.Equal(got, want) {
			stale = append(stale, f)
		}
	}
	// Files the generators added (a new type's client, say).
	err = filepath.WalkDir(cp, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(cp, path)
		if d.IsDir() {
			if rel == "bin" || rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !slices.Contains(files, rel) {
			stale = append(stale, rel+" (new)")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("generated files are stale; run make generate and commit:\n  %s", strings.Join(stale, "\n  "))
	}
}

// trackedFiles lists the tree's files as git sees them: tracked, and
// untracked but not ignored (so a new generated file counts before it is
// committed). Deleted files are left out.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	info, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
