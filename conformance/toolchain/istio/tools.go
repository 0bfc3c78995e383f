//go:build tools

// The commands this module builds; the build tag keeps it out of every real build, and
// `go mod tidy` still records what they need.
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-agent"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
