// Command images builds fledge's OCI images from static binaries, with
// go-containerregistry and no Docker: what `make images` runs
// (e2e/tools/images.sh builds the binaries first).
//
// Each image is two layers on nothing: a base (Debian's Mozilla CA
// certificates, /etc/passwd and /etc/group naming the non-root user 65532,
// its home, /tmp) shared by every image, and the binary at
// /usr/local/bin/<name>. Every file, time and label comes from the commit,
// so two builds of one commit give the same digests. Images are written
// as OCI layouts under --out (one per image, an index of one manifest per
// platform), and pushed to --push with the same library.
//
//	images build   --binaries DIR --out DIR --version V --revision R --created RFC3339 [--push PREFIX]
//	images inspect --layout DIR [--extract PATH --platform OS/ARCH --to FILE]
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: images build|inspect [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "inspect":
		err = inspect(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: build or inspect", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}
