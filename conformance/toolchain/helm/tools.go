//go:build tools

// The command this module builds; the build tag keeps it out of every real build.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
