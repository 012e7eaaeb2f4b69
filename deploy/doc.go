// Package deploy holds Bazaar's deployment files and the tests that keep them
// honest: the Dockerfile, the Compose file, the Kubernetes manifests
// (kustomize), the Prometheus configuration and alert rules, and the Grafana
// dashboard.
//
// It has no code of its own. Its tests, run by "go test ./deploy" and so by
// "make test", check that every Kubernetes manifest decodes strictly into the
// official k8s.io/api types and wires its parts together (selectors, probes,
// grace periods, the HorizontalPodAutoscaler's target); that the Compose file
// passes compose-go's validating loader; that the dashboard and the alert
// rules query only the metrics and labels documented in docs/operations.md;
// and that every setting the manifests pass reaches a variable the binary
// reads. "make test/deploy" runs promtool over the alert rules and their unit
// tests.
package deploy
