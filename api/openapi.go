package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// OpenAPISpec is the OpenAPI 3.1 description of every route, served at
// GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPISpec []byte

func (s *Server) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/yaml", OpenAPISpec)
}
