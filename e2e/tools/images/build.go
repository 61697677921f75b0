package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The non-root user every image runs as: distroless's "nonroot", so
// policies written for those images fit.
const (
	uid     = 65532
	user    = "nonroot"
	home    = "/home/nonroot"
	binDir  = "usr/local/bin"
	caFile  = "etc/ssl/certs/ca-certificates.crt"
	refName = "org.opencontainers.image.ref.name"
)

// descriptions are the images' OCI descriptions, by binary.
var descriptions = map[string]string{
	"fledge":            "fledge: progressive delivery for Kubernetes behind Istio (the engine)",
	"fledge-loadtester": "fledge's load tester: loads canary and stable on a rollout hook's call",
	"fledgectl":         "fledgectl: drive and watch fledge's rollouts (also kubectl fledge)",
}

type buildOptions struct {
	binaries, out, push       string
	names, platforms          []string
	caDir, caPackage          string
	version, revision, source string
	created                   time.Time
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var o buildOptions
	var names, platforms, created string
	fs.StringVar(&o.binaries, "binaries", "", "directory holding <os>_<arch>/<name> for every platform and name")
	fs.StringVar(&o.out, "out", "bin/images", "directory of the OCI layouts, one per image")
	fs.StringVar(&o.push, "push", "", "registry/prefix to push to (each image as <prefix>/<name>:<version>); empty: no push")
	fs.StringVar(&names, "names", "fledge,fledge-loadtester,fledgectl", "binaries to make images of")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "platforms, os/arch")
	fs.StringVar(&o.caDir, "ca-dir", "/usr/share/ca-certificates/mozilla", "Debian's ca-certificates files (*.crt), bundled in this order")
	fs.StringVar(&o.caPackage, "ca-package", "", "the Debian package the CA certificates come from, name and version (a label)")
	fs.StringVar(&o.version, "version", "", "the release (label org.opencontainers.image.version and the tag)")
	fs.StringVar(&o.revision, "revision", "", "the commit (label org.opencontainers.image.revision)")
	fs.StringVar(&o.source, "source", "https://github.com/fledgehq/fledge", "where the source is (label org.opencontainers.image.source)")
	fs.StringVar(&created, "created", "", "the commit's time, RFC 3339: every file's and the images' time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.names, o.platforms = strings.Split(names, ","), strings.Split(platforms, ",")
	var err error
	if o.created, err = time.Parse(time.RFC3339, created); err != nil {
		return fmt.Errorf("--created: %w", err)
	}
	o.created = o.created.UTC()
	if o.binaries == "" || o.version == "" || o.revision == "" {
		return errors.New("--binaries, --version and --revision are required")
	}
	base, err := baseLayer(o)
	if err != nil {
		return err
	}
	for _, n := range o.names {
		idx, err := imageIndex(o, n, base)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if err := writeLayout(filepath.Join(o.out, n), idx, o.version); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		d, _ := idx.Digest()
		fmt.Printf("%s\t%s\t%s\n", n, d, sizes(idx))
		if o.push != "" {
			ref, err := name.ParseReference(strings.TrimSuffix(o.push, "/") + "/" + n + ":" + o.version)
			if err != nil {
				return fmt.Errorf("--push: %w", err)
			}
			if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
				return fmt.Errorf("push %s: %w", ref, err)
			}
			fmt.Printf("pushed %s@%s\n", ref, d)
		}
	}
	return nil
}

// imageIndex is one image for every platform.
func imageIndex(o buildOptions, n string, base v1.Layer) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, err
		}
		bin, err := os.ReadFile(filepath.Join(o.binaries, plat.OS+"_"+plat.Architecture, n))
		if err != nil {
			return nil, err
		}
		img, err := image(o, n, *plat, base, bin)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	return mutate.Annotations(idx, labels(o, n)).(v1.ImageIndex), nil
}

// image is the binary bin of one platform on the base layer.
func image(o buildOptions, n string, plat v1.Platform, base v1.Layer, bin []byte) (v1.Image, error) {
	app, err := layer([]file{
		dir("usr/", 0), dir("usr/local/", 0), dir(binDir+"/", 0),
		{name: binDir + "/" + n, mode: 0o755, data: bin},
	}, o.created)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "make images", Comment: "CA certificates (" + o.caPackage + "), user " + user}},
		mutate.Addendum{Layer: app, History: v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "make images", Comment: n + " " + o.version}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: o.created}
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binDir + "/" + n},
		User:       fmt.Sprintf("%d:%d", uid, uid),
		WorkingDir: home,
		Env: []string{
			"PATH=/" + binDir + ":/usr/bin:/bin",
			"HOME=" + home,
			"SSL_CERT_FILE=/" + caFile,
		},
		Labels: labels(o, n),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels(o, n)).(v1.Image), nil
}

// labels are the OCI annotations of image n, as labels and annotations.
func labels(o buildOptions, n string) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       n,
		"org.opencontainers.image.description": descriptions[n],
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.url":         o.source,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
	if o.caPackage != "" {
		l["dev.fledge.ca-certificates"] = o.caPackage
	}
	return l
}

// baseLayer holds what every image shares: the CA bundle, the user and
// the directories a process expects.
func baseLayer(o buildOptions) (v1.Layer, error) {
	certs, err := filepath.Glob(filepath.Join(o.caDir, "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("--ca-dir %s: no *.crt (install Debian's ca-certificates)", o.caDir)
	}
	slices.Sort(certs)
	var bundle bytes.Buffer
	for _, c := range certs {
		b, err := os.ReadFile(c)
		if err != nil {
			return nil, err
		}
		bundle.Write(bytes.TrimSpace(b))
		bundle.WriteByte('\n')
	}
	return layer([]file{
		dir("etc/", 0),
		{name: "etc/group", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:\n%s:x:%d:\n", user, uid)},
		{name: "etc/passwd", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", user, uid, uid, user, home)},
		dir("etc/ssl/", 0), dir("etc/ssl/certs/", 0),
		{name: caFile, mode: 0o644, data: bundle.Bytes()},
		dir("home/", 0), {name: home[1:] + "/", mode: 0o700 | os.ModeDir, owner: uid},
		{name: "tmp/", mode: 0o1777 | os.ModeDir | os.ModeSticky},
	}, o.created)
}

// file is one entry of a layer.
type file struct {
	name  string
	mode  os.FileMode
	owner int
	data  []byte
}

func dir(name string, owner int) file {
	return file{name: name, mode: 0o755 | os.ModeDir, owner: owner}
}

// layer is files as a gzipped tar, every header fixed by its content and
// the commit's time, so that its digest is too.
func layer(files []file, t time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: int64(f.mode.Perm()), Uid: f.owner, Gid: f.owner, ModTime: t, Format: tar.FormatPAX}
		if f.owner != 0 {
			h.Uname, h.Gname = user, user
		} else {
			h.Uname, h.Gname = "root", "root"
		}
		if f.mode&os.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if f.mode.IsDir() {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// writeLayout replaces the OCI layout at dir with one holding idx, named
// by version.
func writeLayout(dir string, idx v1.ImageIndex, version string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refName: version}))
}

// sizes is each platform's compressed size, for the build's output.
func sizes(idx v1.ImageIndex) string {
	m, err := idx.IndexManifest()
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err.Error()
		}
		ls, err := img.Layers()
		if err != nil {
			return err.Error()
		}
		var total int64
		for _, l := range ls {
			s, err := l.Size()
			if err != nil {
				return err.Error()
			}
			total += s
		}
		out = append(out, fmt.Sprintf("%s %.1f MiB", d.Platform.Architecture, float64(total)/(1<<20)))
	}
	return strings.Join(out, ", ")
}
