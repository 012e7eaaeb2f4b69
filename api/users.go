package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

type corporateAccountRequest struct {
	Name         string `json:"name"`
	BillingEmail string `json:"billing_email"`
	VATID        string `json:"vat_id"`
}

type registerUserRequest struct {
	Email            string                   `json:"email"`
	Name             string                   `json:"name"`
	Country          string                   `json:"country"`
	MarketingOptIn   bool                     `json:"marketing_opt_in"`
	CorporateAccount *corporateAccountRequest `json:"corporate_account"`
}

// registerUser: POST /v1/users (storefront). A corporate account given
// with the user is created in the same transaction.
func (s *Server) registerUser(c *gin.Context) {
	var req registerUserRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	k.email("email", req.Email)
	k.text("name", req.Name, false, 200)
	k.country("country", req.Country)
	var acct *store.CorporateAccount
	if a := req.CorporateAccount; a != nil {
		k.text("corporate_account.name", a.Name, true, 200)
		k.email("corporate_account.billing_email", a.BillingEmail)
		k.text("corporate_account.vat_id", a.VATID, false, 32)
		acct = &store.CorporateAccount{Name: a.Name, BillingEmail: a.BillingEmail, VATID: a.VATID}
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		u, err := store.CreateUser(ctx, tx, store.User{
			Email: req.Email, Name: req.Name, Country: req.Country, MarketingOptIn: req.MarketingOptIn,
		}, acct)
		if err != nil {
			return change{}, emailTaken(err)
		}
		ev, err := store.NewUserEvent("user.registered", u, nil)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusCreated, userOut(u), []store.Event{ev}}, nil
	})
}

func emailTaken(err error) error {
	if isConflict(err) {
		return withDetail(err, "A user with this email exists.", FieldError{Field: "email", Message: "is taken"})
	}
	return err
}

// getUser: GET /v1/users/{id} (storefront).
func (s *Server) getUser(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		u, err := store.GetUser(ctx, q, id)
		return userOut(u), err
	})
}

type updateUserRequest struct {
	Email          *string `json:"email" nullable:"true"`
	Name           *string `json:"name" nullable:"true"`
	Country        *string `json:"country" nullable:"true"`
	MarketingOptIn *bool   `json:"marketing_opt_in" nullable:"true"`
}

// updateUser: PATCH /v1/users/{id} (storefront). Absent or null fields stay.
func (s *Server) updateUser(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req updateUserRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	var changed []string
	if req.Email != nil {
		k.email("email", *req.Email)
		changed = append(changed, "email")
	}
	if req.Name != nil {
		k.text("name", *req.Name, false, 200)
		changed = append(changed, "name")
	}
	if req.Country != nil {
		k.country("country", *req.Country)
		changed = append(changed, "country")
	}
	if req.MarketingOptIn != nil {
		changed = append(changed, "marketing_opt_in")
	}
	if len(changed) == 0 {
		k.add("(body)", "name at least one of "+strings.Join([]string{"email", "name", "country", "marketing_opt_in"}, ", "))
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		u, err := store.UpdateUser(ctx, tx, id, store.UserChanges{
			Email: req.Email, Name: req.Name, Country: req.Country, MarketingOptIn: req.MarketingOptIn,
		})
		if err != nil {
			return change{}, emailTaken(err)
		}
		ev, err := store.NewUserEvent("user.updated", u, changed)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusOK, userOut(u), []store.Event{ev}}, nil
	})
}

// createSession: POST /v1/users/{id}/sessions (storefront). The storefront
// has signed the user in; Bazaar records the login time and its event in
// one transaction.
func (s *Server) createSession(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req struct{}
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		u, err := store.RecordLogin(ctx, tx, id)
		if err != nil {
			return change{}, err
		}
		ev, err := store.NewUserEvent("user.logged_in", u, nil)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusCreated, sessionDTO{UserID: u.ID, LoggedInAt: *u.LastLoginAt}, []store.Event{ev}}, nil
	})
}
