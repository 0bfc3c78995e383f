//go:build tools

// The commands this module builds; the build tag keeps it out of every real build, and
// `go mod tidy` still records what they need.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
