// Package helmtest checks the authgate Helm chart (../authgate) with the real
// helm binary: lint, render, strict decoding of every rendered object into
// its Kubernetes API type, and the chart's security invariants (the Service
// and NetworkPolicy expose only the gateway, configuration is mounted as
// directories so hot reload works, the pods run hardened, probes use the
// admin port, typos in values are rejected, and only restart-worthy settings
// roll the pods). It also builds the authgate binary from the repository root
// and runs `authgate check --strict` on the config.yaml, policy, users, keys
// and JWT secret each scenario renders, laid out as the pod mounts them, so
// the chart cannot drift from the binary's config schema. The shutdown order
// (the application's preStop sleep and the grace period) is checked against
// the binary's documented defaults in config.example.yaml, and the
// docker-compose example against the image tag and the binary as well.
//
// It lives in its own Go module so that the Kubernetes API modules stay out of
// the product's go.mod. Run it with
//
//	cd helm/test && go test -race ./...
//
// The helm binary is taken from $HELM when set; otherwise helm v3.22.0 is
// built once through the Go module proxy and cached under the user cache
// directory (see helmBinary).
package helmtest
