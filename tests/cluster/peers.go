//go:build tools

// Modules the real test tier reads files from (never copied into the repo): Istio's CRD
// YAML (istio.io/api, kubernetes/customresourcedefinitions.gen.yaml) and the Gateway
// API CRDs (sigs.k8s.io/gateway-api, config/crd/). Importing them here pins their
// versions in go.mod and go.sum; scripts/peers.sh finds their directories in the module
// cache with `go list -m`.
package main

import (
	_ "istio.io/api/networking/v1"
	_ "sigs.k8s.io/gateway-api/apis/v1"
)
