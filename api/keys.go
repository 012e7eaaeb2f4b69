package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

type createKeyRequest struct {
	Name string `json:"name"`
}

// createSellerKey: POST /v1/sellers/{id}/keys (admin, the seller itself).
func (s *Server) createSellerKey(c *gin.Context) { s.createKey(c, store.KeySeller, prefixSeller) }

// createStorefrontKey: POST /v1/storefront-keys (admin).
func (s *Server) createStorefrontKey(c *gin.Context) {
	s.createKey(c, store.KeyStorefront, prefixStorefront)
}

// createKey makes a key and answers with its secret, the only time the
// secret is ever shown.
func (s *Server) createKey(c *gin.Context, role store.KeyRole, prefix string) {
	var sellerID *uuid.UUID
	if role != store.KeyStorefront {
		id, err := s.visibleSeller(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		sellerID = &id
	}
	var req createKeyRequest
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	k.text("name", req.Name, false, 200)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if sellerID != nil {
			if _, err := store.GetSeller(ctx, tx, *sellerID); err != nil {
				return change{}, err
			}
		}
		secret, err := newSecret(prefix)
		if err != nil {
			return change{}, err
		}
		key, err := store.CreateAPIKey(ctx, tx, role, sellerID, req.Name, secret, displayPrefix(secret))
		if err != nil {
			return change{}, err
		}
		if err := s.auditKey(ctx, tx, c, ActionKeyCreate, key); err != nil {
			return change{}, err
		}
		out := apiKeyOut(key)
		out.Key = secret
		return change{status: http.StatusCreated, body: out}, nil
	})
}

// listSellerKeys: GET /v1/sellers/{id}/keys (admin, the seller itself):
// the seller's keys and printer tokens, without secrets.
func (s *Server) listSellerKeys(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, id); err != nil {
			return nil, err
		}
		keys, err := store.ListAPIKeys(ctx, q, &id)
		return listOf(keys, nil, apiKeyOut), err
	})
}

// listStorefrontKeys: GET /v1/storefront-keys (admin).
func (s *Server) listStorefrontKeys(c *gin.Context) {
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		keys, err := store.ListAPIKeys(ctx, q, nil)
		return listOf(keys, nil, apiKeyOut), err
	})
}

// revokeSellerKey: DELETE /v1/sellers/{id}/keys/{key_id} (admin, the
// seller itself); revokes a seller key or printer token. Revoking twice is
// no error.
func (s *Server) revokeSellerKey(c *gin.Context) {
	sellerID, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.revokeKey(c, &sellerID)
}

// revokeStorefrontKey: DELETE /v1/storefront-keys/{key_id} (admin).
func (s *Server) revokeStorefrontKey(c *gin.Context) { s.revokeKey(c, nil) }

func (s *Server) revokeKey(c *gin.Context, sellerID *uuid.UUID) {
	keyID, err := pathID(c, "key_id")
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		key, err := store.RevokeAPIKey(ctx, tx, keyID, sellerID)
		if err != nil {
			return change{}, err
		}
		if err := s.auditKey(ctx, tx, c, ActionKeyRevoke, key); err != nil {
			return change{}, err
		}
		return change{status: http.StatusNoContent}, nil
	})
	// Whatever the outcome, this process believes no cached key from now
	// on (a commit whose answer failed has still revoked).
	s.keys.clear()
	if !c.IsAborted() && c.Writer.Status() == http.StatusNoContent {
		// Committed: end the key's live streams on every API process.
		s.announceRevocation(c.Request.Context(), keyID)
	}
}
