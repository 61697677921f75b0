package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Layout is what inspect prints of an OCI layout written by build: the
// tests read it (they live in the product's module, which does not import
// go-containerregistry).
type Layout struct {
	RefName   string     `json:"refName"`
	Digest    string     `json:"digest"`
	MediaType string     `json:"mediaType"`
	Labels    labelsMap  `json:"annotations"`
	Images    []Manifest `json:"images"`
}

type labelsMap = map[string]string

// Manifest is one platform's image.
type Manifest struct {
	Platform  string    `json:"platform"`
	Digest    string    `json:"digest"`
	MediaType string    `json:"mediaType"`
	Config    v1.Config `json:"config"`
	OS        string    `json:"os"`
	Arch      string    `json:"architecture"`
	Created   string    `json:"created"`
	Layers    []Layer   `json:"layers"`
	Files     []File    `json:"files"`
}

// Layer is one layer's digest, media type and compressed size.
type Layer struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

// File is one entry of the image's filesystem.
type File struct {
	Name string `json:"name"`
	Mode int64  `json:"mode"`
	UID  int    `json:"uid"`
	Size int64  `json:"size"`
}

func inspect(args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	dir := fs.String("layout", "", "an OCI layout written by build")
	extract := fs.String("extract", "", "a file of the image to copy out (with --platform and --to)")
	platform := fs.String("platform", "linux/amd64", "the platform whose image --extract reads")
	to := fs.String("to", "", "where --extract writes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := layout.FromPath(*dir)
	if err != nil {
		return err
	}
	top, err := p.ImageIndex()
	if err != nil {
		return err
	}
	tm, err := top.IndexManifest()
	if err != nil {
		return err
	}
	if len(tm.Manifests) != 1 {
		return fmt.Errorf("%s: %d entries in index.json, want 1", *dir, len(tm.Manifests))
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	out := Layout{RefName: tm.Manifests[0].Annotations[refName], Digest: tm.Manifests[0].Digest.String(), MediaType: string(im.MediaType), Labels: im.Annotations}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			return fmt.Errorf("manifest %s names no platform", d.Digest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		if *extract != "" && d.Platform.String() == *platform {
			return extractFile(img, *extract, *to)
		}
		m, err := manifest(img, d)
		if err != nil {
			return err
		}
		out.Images = append(out.Images, m)
	}
	if *extract != "" {
		return fmt.Errorf("no image for platform %s", *platform)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func manifest(img v1.Image, d v1.Descriptor) (Manifest, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Platform: d.Platform.String(), Digest: d.Digest.String(), MediaType: string(d.MediaType),
		Config: cf.Config, OS: cf.OS, Arch: cf.Architecture, Created: cf.Created.UTC().Format("2006-01-02T15:04:05Z07:00")}
	ls, err := img.Layers()
	if err != nil {
		return Manifest{}, err
	}
	for _, l := range ls {
		dg, err := l.Digest()
		if err != nil {
			return Manifest{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return Manifest{}, err
		}
		size, err := l.Size()
		if err != nil {
			return Manifest{}, err
		}
		m.Layers = append(m.Layers, Layer{Digest: dg.String(), MediaType: string(mt), Size: size})
	}
	err = eachFile(img, func(h *tar.Header, _ io.Reader) error {
		m.Files = append(m.Files, File{Name: h.Name, Mode: h.Mode, UID: h.Uid, Size: h.Size})
		return nil
	})
	return m, err
}

// eachFile walks the image's flattened filesystem.
func eachFile(img v1.Image, fn func(*tar.Header, io.Reader) error) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

var errFound = errors.New("found")

func extractFile(img v1.Image, name, to string) error {
	err := eachFile(img, func(h *tar.Header, r io.Reader) error {
		if h.Name != name {
			return nil
		}
		f, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode).Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return errFound
	})
	if errors.Is(err, errFound) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("no file %s in the image", name)
	}
	return err
}
