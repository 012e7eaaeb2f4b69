package api

import (
	"strings"

	"github.com/gin-gonic/gin"
)

// securityHeaders go on every response: no MIME sniffing, and no framing
// of any page by another site (clickjacking of /monitor and the pages).
func (s *Server) securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	c.Next()
}

// requestIsHTTPS reports whether the client's request came over TLS: to
// this server, or to a trusted proxy that says so in X-Forwarded-Proto.
func (s *Server) requestIsHTTPS(c *gin.Context) bool {
	if c.Request.TLS != nil {
		return true
	}
	return s.fromTrustedProxy(c) && strings.EqualFold(strings.TrimSpace(strings.Split(c.GetHeader("X-Forwarded-Proto"), ",")[0]), "https")
}
