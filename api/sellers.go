package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

type createSellerRequest struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// createSeller: POST /v1/sellers (admin).
func (s *Server) createSeller(c *gin.Context) {
	var req createSellerRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	k.text("name", req.Name, true, 200)
	k.email("email", req.Email)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		sl, err := store.CreateSeller(ctx, tx, req.Name, req.Email)
		if err != nil {
			return change{}, err
		}
		ev, err := store.NewSellerEvent("seller.created", sl)
		if err != nil {
			return change{}, err
		}
		if err := s.auditSeller(ctx, tx, c, ActionSellerCreate, sl.ID, req); err != nil {
			return change{}, err
		}
		return change{http.StatusCreated, sellerOut(sl), []store.Event{ev}}, nil
	})
}

// getSeller: GET /v1/sellers/{id}.
func (s *Server) getSeller(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		sl, err := store.GetSeller(ctx, q, id)
		return sellerOut(sl), err
	})
}

// listSellers: GET /v1/sellers (admin, storefront).
func (s *Server) listSellers(c *gin.Context) {
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, next, err := store.ListSellers(ctx, q, p)
		return listOf(rows, next, sellerOut), err
	})
}

// visibleSeller parses the :id path parameter as a seller the caller sees;
// another seller's id is ErrNotFound, as if it did not exist.
func (s *Server) visibleSeller(c *gin.Context) (uuid.UUID, error) {
	id, err := pathID(c, "id")
	if err != nil {
		return uuid.Nil, err
	}
	if !principalOf(c).Sees(id) {
		return uuid.Nil, store.ErrNotFound
	}
	return id, nil
}
