package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/sql/migrations"
)

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz reports whether this process can serve: Postgres reachable and the
// schema at least at the version this binary expects (migrations.Status.Serves),
// so a process of the previous release stays ready after "migrate up".
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := gin.H{}
	ok := true
	st, err := migrations.CurrentStatus(ctx, s.cfg.DB.DB)
	switch {
	case err != nil:
		ok = false
		checks["postgres"] = "unreachable"
	case st.Dirty:
		ok = false
		checks["postgres"] = "ok"
		checks["migrations"] = "dirty"
	case !st.Serves():
		ok = false
		checks["postgres"] = "ok"
		checks["migrations"] = "pending"
	default:
		checks["postgres"] = "ok"
		checks["migrations"] = "current"
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{"ready": ok, "checks": checks})
}
