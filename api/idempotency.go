package api

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Idempotency headers.
const (
	HeaderIdempotencyKey      = "Idempotency-Key"
	HeaderIdempotencyReplayed = "Idempotency-Replayed"
)

const idempotencyKey = "bazaar.idempotency"

// idemRequest is a POST made with an Idempotency-Key, waiting to be
// recorded by write in the transaction of its change.
type idemRequest struct {
	principal string
	key       string
	method    string
	path      string
	hash      []byte
}

// matches reports whether rec answered this very request.
func (r *idemRequest) matches(rec store.IdempotencyRecord) bool {
	return rec.Method == r.method && rec.Path == r.path && bytes.Equal(rec.RequestHash, r.hash)
}

// idempotency handles the Idempotency-Key header of POST requests. A key
// seen before with the same request replays the stored response; with
// another request it is a 422. A new key is passed on to write, which
// locks it for the duration of the transaction (a concurrent duplicate
// gets 409) and stores the response in that transaction, so a change and
// its record commit together or not at all. Records expire after 24 h.
// Run it after authenticate: keys are scoped to the caller.
func (s *Server) idempotency(c *gin.Context) {
	key := c.GetHeader(HeaderIdempotencyKey)
	if c.Request.Method != http.MethodPost || key == "" {
		c.Next()
		return
	}
	if len(key) > 255 || !validRequestID(key[:min(len(key), 128)]) {
		s.fail(c, badParam(HeaderIdempotencyKey, "must be 1 to 255 printable ASCII characters without spaces"))
		return
	}
	var body []byte
	if c.Request.Body != nil {
		b, err := io.ReadAll(c.Request.Body)
		if err != nil {
			s.fail(c, err)
			return
		}
		body = b
		c.Request.Body = io.NopCloser(bytes.NewReader(b))
	}
	sum := sha256.Sum256(body)
	req := &idemRequest{
		principal: principalOf(c).ID(),
		key:       key,
		method:    c.Request.Method,
		path:      c.Request.URL.Path,
		hash:      sum[:],
	}
	var rec store.IdempotencyRecord
	var err error
	v, _ := c.Get(idemPrecheckKey)
	if pre, ok := v.(*idemPrecheck); ok && pre.key == key {
		// authenticate read it with the API key.
		if rec = pre.rec; !pre.found {
			err = store.ErrNotFound
		}
	} else if selfCheckedIdempotency[c.FullPath()] {
		// The handler reads the record with its other inputs.
		err = store.ErrNotFound
	} else {
		rec, err = store.GetIdempotencyRecord(c.Request.Context(), s.stmts.DB(), req.principal, key)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.Set(idempotencyKey, req)
		c.Next()
	case err != nil:
		s.fail(c, err)
	default:
		s.replay(c, req, rec)
	}
}

// replay answers with a stored response, or 422 when the key was used
// for another request.
func (s *Server) replay(c *gin.Context, req *idemRequest, rec store.IdempotencyRecord) {
	if !req.matches(rec) {
		s.fail(c, withDetail(errIdempotencyReused, "This Idempotency-Key was used with another method, path or body; use a new key."))
		return
	}
	c.Header(HeaderIdempotencyReplayed, "true")
	c.Abort()
	c.Data(rec.Status, rec.ContentType, rec.Response)
}

// selfCheckedIdempotency are the POST routes whose handlers look up the
// idempotency record themselves, in the round trip reading their other
// inputs, and replay it (POST /v1/orders: store.ReadOrderInputs).
var selfCheckedIdempotency = map[string]bool{"/v1/orders": true}

func idempotentRequest(c *gin.Context) *idemRequest {
	v, _ := c.Get(idempotencyKey)
	r, _ := v.(*idemRequest)
	return r
}
