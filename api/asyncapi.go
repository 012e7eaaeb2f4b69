package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// AsyncAPISpec is the AsyncAPI 3.0 event catalogue: every stream, event
// type and data schema, consumer group and SSE route, served at
// GET /asyncapi.yaml. An event's dataschema urn:bazaar:<type>:<version>
// resolves to its components.schemas["<type>.v<version>"].
//
//go:embed asyncapi.yaml
var AsyncAPISpec []byte

func (s *Server) asyncAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/yaml", AsyncAPISpec)
}
