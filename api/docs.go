package api

import (
	"bytes"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/api/docs"
)

// redocPath is where the vendored Redoc bundle is served; a file rather
// than inline script, so a stricter script-src later needs only 'self'.
const redocPath = "/docs/redoc.standalone.js"

// problemTypes lists every problem type the API answers with, from the
// kinds table (and the fallback), each slug once, so /docs cannot list a
// type the API does not send nor miss one it does.
func problemTypes() []docs.Problem {
	seen := map[string]bool{}
	var out []docs.Problem
	for _, k := range append(kindsList(), internalKind) {
		if seen[k.slug] {
			continue
		}
		seen[k.slug] = true
		out = append(out, docs.Problem{URI: ProblemBase + k.slug, Slug: k.slug, Title: k.title, Status: k.status})
	}
	return out
}

func kindsList() []problemKind {
	out := make([]problemKind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k.kind)
	}
	return out
}

func (s *Server) docsReference(c *gin.Context) {
	var buf bytes.Buffer
	if err := docs.Reference(&buf, "Bazaar API", "/openapi.yaml", redocPath, problemTypes()); err != nil {
		s.fail(c, err)
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

func (s *Server) docsEvents(c *gin.Context) {
	var buf bytes.Buffer
	if err := docs.Events(&buf, AsyncAPISpec, "/asyncapi.yaml"); err != nil {
		s.fail(c, err)
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

func (s *Server) docsRedoc(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=3600")
	c.Data(http.StatusOK, "text/javascript; charset=utf-8", docs.Redoc())
}
