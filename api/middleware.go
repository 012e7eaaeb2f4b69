package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-ID"

const requestIDKey = "bazaar.request_id"

// requestIDs accepts a client's X-Request-ID when it is 1 to 128 printable
// ASCII characters without spaces (it ends up in logs and events), and
// makes a UUIDv7 otherwise. The id is echoed in the response.
func (s *Server) requestIDs(c *gin.Context) {
	id := c.GetHeader(HeaderRequestID)
	if !validRequestID(id) {
		if v7, err := uuid.NewV7(); err == nil {
			id = v7.String()
		} else {
			id = uuid.NewString()
		}
	}
	c.Set(requestIDKey, id)
	c.Header(HeaderRequestID, id)
	c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestID returns the id of the request being served.
func requestID(c *gin.Context) string { return c.GetString(requestIDKey) }

// logFor returns the server's logger with the request id attached, for
// every line logged while serving c.
func (s *Server) logFor(c *gin.Context) *slog.Logger {
	return s.log.With("request_id", requestID(c))
}

// accessLog writes one line per request once it is answered.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	level := slog.LevelInfo
	if status >= http.StatusInternalServerError {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(c.Request.Context(), level, "request",
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("request_id", requestID(c)),
	)
}

// recoverPanics turns a handler panic into a 500 problem. The stack goes to
// the log only, never to the client.
func (s *Server) recoverPanics(c *gin.Context) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler { //nolint:errorlint // recover returns the value as it was panicked
			panic(r)
		}
		s.logFor(c).Error("panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		if c.Writer.Written() {
			c.Abort()
			return
		}
		s.fail(c, errPanic)
	}()
	c.Next()
}

// limitBody caps request bodies at MaxBodyBytes; reading past it fails
// with *http.MaxBytesError, which becomes a 413 problem.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		s.fail(c, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes})
		return
	}
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
	c.Next()
}

func (s *Server) noRoute(c *gin.Context) {
	s.fail(c, withDetail(errRouteNotFound, "No route matches "+c.Request.Method+" "+c.Request.URL.Path+"."))
}

func (s *Server) noMethod(c *gin.Context) {
	s.fail(c, withDetail(errMethodNotAllowed, "Method "+c.Request.Method+" is not allowed here."))
}

// traceParentRE is the W3C Trace Context traceparent header, version 00 or
// a later one (whose extra fields are ignored).
var traceParentRE = regexp.MustCompile(`^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$`)

// traceParent returns the request's traceparent header when it is valid,
// "" otherwise, so events never carry garbage.
func traceParent(c *gin.Context) string {
	v := c.GetHeader("traceparent")
	m := traceParentRE.FindStringSubmatch(v)
	if m == nil || m[1] == "ff" || (m[1] == "00" && m[5] != "") {
		return ""
	}
	if m[2] == "00000000000000000000000000000000" || m[3] == "0000000000000000" {
		return ""
	}
	return v
}
