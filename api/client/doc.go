// Package client is the Go client of Bazaar's REST API, generated from
// api/openapi.yaml by oapi-codegen, so a route or field the document lacks
// cannot be called from Go: cmd/printer and the end-to-end tests use it for
// that reason. Regenerate with "make generate" after changing the document;
// "make test" fails while client.gen.go is out of date.
//
// It imports nothing of Bazaar's.
package client

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml ../openapi.yaml
