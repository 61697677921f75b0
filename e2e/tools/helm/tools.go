//go:build tools

// Package tools pins Helm, built into bin/helm by e2e/tools/generators.sh (make tools) for
// the chart's lint, template and install tests and for rendering deploy/'s plain manifests.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
