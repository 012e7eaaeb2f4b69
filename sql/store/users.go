package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// CorporateAccount is a company whose users' orders are invoiced to it
// bi-weekly instead of being paid one by one.
type CorporateAccount struct {
	ID           uuid.UUID `db:"id"`
	Name         string    `db:"name"`
	BillingEmail string    `db:"billing_email"`
	VATID        string    `db:"vat_id"`
	CreatedAt    time.Time `db:"created_at"`
}

// User is a buyer, optionally belonging to a corporate account.
type User struct {
	ID                 uuid.UUID  `db:"id"`
	Email              string     `db:"email"`
	Name               string     `db:"name"`
	Country            string     `db:"country"`
	MarketingOptIn     bool       `db:"marketing_opt_in"`
	CorporateAccountID *uuid.UUID `db:"corporate_account_id"`
	LastLoginAt        *time.Time `db:"last_login_at"`
	CreatedAt          time.Time  `db:"created_at"`
	UpdatedAt          time.Time  `db:"updated_at"`

	// CorporateAccount is loaded with the user when CorporateAccountID is set.
	CorporateAccount *CorporateAccount `db:"-"`
}

const userColumns = `id, email, name, country, marketing_opt_in, corporate_account_id, last_login_at, created_at, updated_at`

const insertCorporateAccountQuery = `
INSERT INTO corporate_accounts (id, name, billing_email, vat_id) VALUES ($1, $2, $3, $4)
RETURNING id, name, billing_email, vat_id, created_at`

const insertUserQuery = `
INSERT INTO users (id, email, name, country, marketing_opt_in, corporate_account_id)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING ` + userColumns

// CreateUser inserts a user (Email, Name, Country, MarketingOptIn are
// read from u) and, when account is not nil, its corporate account first;
// run it in a transaction so both or neither exist. A taken email
// (case-insensitive) is ErrConflict.
func CreateUser(ctx context.Context, q sqlx.QueryerContext, u User, account *CorporateAccount) (User, error) {
	var acct *CorporateAccount
	if account != nil {
		id, err := uuid.NewV7()
		if err != nil {
			return User{}, fmt.Errorf("corporate account id: %w", err)
		}
		acct = new(CorporateAccount)
		if err := sqlx.GetContext(ctx, q, acct, insertCorporateAccountQuery, id, account.Name, account.BillingEmail, account.VATID); err != nil {
			return User{}, fmt.Errorf("create corporate account: %w", translate(err))
		}
		u.CorporateAccountID = &acct.ID
	}
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, fmt.Errorf("user id: %w", err)
	}
	var out User
	if err := sqlx.GetContext(ctx, q, &out, insertUserQuery, id, u.Email, u.Name, u.Country, u.MarketingOptIn, u.CorporateAccountID); err != nil {
		return User{}, fmt.Errorf("create user: %w", translate(err))
	}
	out.CorporateAccount = acct
	return out, nil
}

const getUserQuery = `SELECT ` + userColumns + ` FROM users WHERE id = $1`

const getCorporateAccountQuery = `
SELECT id, name, billing_email, vat_id, created_at FROM corporate_accounts WHERE id = $1`

// GetUser reads a user with its corporate account; ErrNotFound when there is none.
func GetUser(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (User, error) {
	var u User
	if err := sqlx.GetContext(ctx, q, &u, getUserQuery, id); err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, translate(err))
	}
	if err := loadCorporateAccount(ctx, q, &u); err != nil {
		return User{}, err
	}
	return u, nil
}

func loadCorporateAccount(ctx context.Context, q sqlx.QueryerContext, u *User) error {
	if u.CorporateAccountID == nil {
		return nil
	}
	u.CorporateAccount = new(CorporateAccount)
	if err := sqlx.GetContext(ctx, q, u.CorporateAccount, getCorporateAccountQuery, *u.CorporateAccountID); err != nil {
		return fmt.Errorf("get corporate account %s: %w", *u.CorporateAccountID, translate(err))
	}
	return nil
}

// UserChanges lists the profile fields to change; nil fields stay.
type UserChanges struct {
	Email          *string
	Name           *string
	Country        *string
	MarketingOptIn *bool
}

const updateUserQuery = `
UPDATE users SET
    email = coalesce($2, email),
    name = coalesce($3, name),
    country = coalesce($4, country),
    marketing_opt_in = coalesce($5, marketing_opt_in),
    updated_at = now()
WHERE id = $1
RETURNING ` + userColumns

// UpdateUser changes a user's profile and returns it as stored.
// ErrNotFound when there is no user; ErrConflict when the new email is taken.
func UpdateUser(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, ch UserChanges) (User, error) {
	var u User
	if err := sqlx.GetContext(ctx, q, &u, updateUserQuery, id, ch.Email, ch.Name, ch.Country, ch.MarketingOptIn); err != nil {
		return User{}, fmt.Errorf("update user %s: %w", id, translate(err))
	}
	if err := loadCorporateAccount(ctx, q, &u); err != nil {
		return User{}, err
	}
	return u, nil
}

const recordLoginQuery = `
UPDATE users SET last_login_at = now() WHERE id = $1
RETURNING ` + userColumns

// RecordLogin stamps the user's last login with the transaction's time and
// returns the user; ErrNotFound when there is none.
func RecordLogin(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (User, error) {
	var u User
	if err := sqlx.GetContext(ctx, q, &u, recordLoginQuery, id); err != nil {
		return User{}, fmt.Errorf("record login of %s: %w", id, translate(err))
	}
	if err := loadCorporateAccount(ctx, q, &u); err != nil {
		return User{}, err
	}
	return u, nil
}

// UserEventData is the data of user.* events: the user as it is after the
// change. Changed names the profile fields a user.updated event changed.
type UserEventData struct {
	UserID             uuid.UUID  `json:"user_id"`
	Email              string     `json:"email"`
	Name               string     `json:"name"`
	Country            string     `json:"country"`
	MarketingOptIn     bool       `json:"marketing_opt_in"`
	CorporateAccountID *uuid.UUID `json:"corporate_account_id,omitempty"`
	LastLoginAt        *time.Time `json:"last_login_at,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
	Changed            []string   `json:"changed,omitempty"`
}

// NewUserEvent builds a user event (user.registered, user.updated,
// user.logged_in) whose subject is the user and whose data is u.
func NewUserEvent(typ string, u User, changed []string) (Event, error) {
	return NewEvent(typ, u.ID.String(), nil, 1, UserEventData{
		UserID: u.ID, Email: u.Email, Name: u.Name, Country: u.Country,
		MarketingOptIn: u.MarketingOptIn, CorporateAccountID: u.CorporateAccountID,
		LastLoginAt: u.LastLoginAt, CreatedAt: u.CreatedAt, Changed: changed,
	})
}
