package loadtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvSecret {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		file    string
		env     string
		want    string
		wantErr string
	}{
		{"a file is read byte for byte", file, "", "s3cret\n", ""},
		{"the environment is read", "", "from-env", "from-env", ""},
		{"nothing is no secret and no error", "", "", "", ""},
		{"a file and the environment at once are refused", file, "x", "", "secret: both the file " + file + " and FLEDGE_LOADTESTER_SECRET are set: choose one"},
		{"an empty file is refused", empty, "", "", "secret: " + empty + " is empty"},
		{"a missing file is an error", filepath.Join(dir, "missing"), "", "", "secret: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSecret(tt.file, env(tt.env))
			if errString(err) != tt.wantErr || string(got) != tt.want {
				t.Errorf("ReadSecret = %q, %q; want %q, %q", got, errString(err), tt.want, tt.wantErr)
			}
		})
	}
}
