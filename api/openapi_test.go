package api

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

var ginParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// Every route the engine serves is described in openapi.yaml, and every
// operation there is served.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	doc, _ := spec(t)
	b := setup(t)
	served := map[string]bool{}
	for _, r := range b.srv.Engine().Routes() {
		path := ginParam.ReplaceAllString(r.Path, "{$1}")
		served[r.Method+" "+path] = true
		item := doc.Paths.Value(path)
		require.NotNil(t, item, "route %s %s is missing from openapi.yaml", r.Method, path)
		require.NotNil(t, item.GetOperation(r.Method), "route %s %s is missing from openapi.yaml", r.Method, path)
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			require.True(t, served[method+" "+path], "openapi.yaml describes %s %s, which is not served", method, path)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodGet, "/openapi.yaml", "", nil).status(http.StatusOK)
	require.Equal(t, OpenAPISpec, r.body)
}

func TestAsyncAPIServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodGet, "/asyncapi.yaml", "", nil).status(http.StatusOK)
	require.Equal(t, AsyncAPISpec, r.body)
	require.Equal(t, "application/yaml", r.header.Get("Content-Type"))
}
