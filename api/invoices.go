package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

// Invoicing routes: runs are started and retried here by recording the run
// and an event in one transaction; the invoicing consumer group hands them
// to the workers, so no handler writes to Redis.

const contentTypePDF = "application/pdf"

// invoiceLocation is the time zone invoicing periods are calendar days in.
func (s *Server) invoiceLocation() *time.Location {
	if s.cfg.InvoiceLocation != nil {
		return s.cfg.InvoiceLocation
	}
	return time.UTC
}

type runProgressDTO struct {
	Accounts int `json:"accounts"`
	Pending  int `json:"pending"`
	Done     int `json:"done"`
	Failed   int `json:"failed"`
	Invoices int `json:"invoices"`
	// Percent is the share of accounts done or failed, 0 to 100.
	Percent int `json:"percent"`
}

type runAccountDTO struct {
	AccountID uuid.UUID `json:"account_id"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	Error     string    `json:"error"`
	UpdatedAt time.Time `json:"updated_at"`
}

type invoiceRunDTO struct {
	ID           uuid.UUID        `json:"id"`
	PeriodStart  string           `json:"period_start"`
	PeriodEnd    string           `json:"period_end"`
	Timezone     string           `json:"timezone"`
	StartsAt     time.Time        `json:"starts_at"`
	EndsAt       time.Time        `json:"ends_at"`
	Trigger      string           `json:"trigger"`
	Status       string           `json:"status"`
	Progress     runProgressDTO   `json:"progress"`
	Completions  int              `json:"completions"`
	CreatedAt    time.Time        `json:"created_at"`
	DiscoveredAt *time.Time       `json:"discovered_at"`
	CompletedAt  *time.Time       `json:"completed_at"`
	Failures     *[]runAccountDTO `json:"failed_accounts,omitempty"`
}

func runOut(r store.InvoiceRun, pr store.RunProgress) invoiceRunDTO {
	pct := 0
	if pr.Accounts > 0 {
		pct = (pr.Done + pr.Failed) * 100 / pr.Accounts
	} else if r.Status == store.RunCompleted {
		pct = 100
	}
	return invoiceRunDTO{
		ID: r.ID, PeriodStart: r.PeriodStart.Format(store.DateLayout),
		PeriodEnd: r.PeriodEnd.AddDate(0, 0, -1).Format(store.DateLayout),
		Timezone:  r.Timezone, StartsAt: r.StartsAt, EndsAt: r.EndsAt, Trigger: r.Trigger, Status: r.Status,
		Progress: runProgressDTO{
			Accounts: pr.Accounts, Pending: pr.Pending, Done: pr.Done, Failed: pr.Failed, Invoices: pr.Invoices, Percent: pct,
		},
		Completions: r.Completions, CreatedAt: r.CreatedAt, DiscoveredAt: r.DiscoveredAt, CompletedAt: r.CompletedAt,
	}
}

// runWithProgress reads a run's progress and renders both.
func runWithProgress(ctx context.Context, q sqlx.QueryerContext, r store.InvoiceRun) (invoiceRunDTO, error) {
	pr, err := store.InvoiceRunProgress(ctx, q, r.ID)
	if err != nil {
		return invoiceRunDTO{}, err
	}
	return runOut(r, pr), nil
}

// runCreate is the body of POST /v1/admin/invoicing/runs: the first and
// last day of the period, both included.
type runCreate struct {
	PeriodStart string `json:"period_start"`
	PeriodEnd   string `json:"period_end"`
	Reason      string `json:"reason"`
}

// startInvoiceRun: POST /v1/admin/invoicing/runs. 201 with a new run, 200
// with the run of the same period when it exists; 409 when the period
// overlaps another run's, 422 when it has not ended.
func (s *Server) startInvoiceRun(c *gin.Context) {
	var in runCreate
	if err := bind(c, &in, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	first, err := time.Parse(store.DateLayout, in.PeriodStart)
	if err != nil {
		k.add("period_start", "must be a date such as 2026-10-15")
	}
	last, err := time.Parse(store.DateLayout, in.PeriodEnd)
	if err != nil {
		k.add("period_end", "must be a date such as 2026-10-31")
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	period, err := invoicing.NewPeriod(first, last)
	if err != nil {
		s.fail(c, invalid(FieldError{Field: "period_end", Message: "must be on or after period_start, at most 92 days later"}))
		return
	}
	loc := s.invoiceLocation()
	e := s.auditEntry(c, ActionInvoiceRunStart, in.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		run, created, events, err := invoicing.CreateRun(ctx, tx, invoicing.RunRequest{
			Period: period, Trigger: invoicing.TriggerManual, RequestID: requestID(c),
		}, loc, time.Now())
		switch {
		case errors.Is(err, invoicing.ErrPeriodOpen):
			return change{}, invalid(FieldError{Field: "period_end", Message: "the period has not ended yet in " + loc.String()})
		case errors.Is(err, store.ErrConflict):
			return change{}, withDetail(err, "The period overlaps another invoice run's; an order is billed in one run only.")
		case err != nil:
			return change{}, err
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		e.Target = "invoice_run:" + run.ID.String()
		e.Params = auditParams(map[string]any{"period_start": in.PeriodStart, "period_end": in.PeriodEnd, "created": created})
		if err := s.audit(ctx, tx, e); err != nil {
			return change{}, err
		}
		out, err := runWithProgress(ctx, tx, run)
		return change{status, out, events}, err
	})
}

// listInvoiceRuns: GET /v1/admin/invoicing/runs, newest first.
func (s *Server) listInvoiceRuns(c *gin.Context) {
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, next, err := store.ListInvoiceRuns(ctx, q, p)
		if err != nil {
			return nil, err
		}
		out := listDTO[invoiceRunDTO]{Items: make([]invoiceRunDTO, len(rows)), NextCursor: encodeCursor(next)}
		for i, r := range rows {
			if out.Items[i], err = runWithProgress(ctx, q, r); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// maxListedFailures caps the failed accounts shown with a run.
const maxListedFailures = 100

// getInvoiceRun: GET /v1/admin/invoicing/runs/{id}, with its progress and
// up to 100 failed accounts and their errors.
func (s *Server) getInvoiceRun(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		run, err := store.GetInvoiceRun(ctx, q, id)
		if err != nil {
			return nil, err
		}
		failed, err := store.ListRunAccounts(ctx, q, id, store.RunAccountFailed, uuid.Nil, maxListedFailures)
		if err != nil {
			return nil, err
		}
		out, err := runWithProgress(ctx, q, run)
		if err != nil {
			return nil, err
		}
		list := make([]runAccountDTO, len(failed))
		for i, ra := range failed {
			list[i] = runAccountDTO{AccountID: ra.AccountID, Status: ra.Status, Attempts: ra.Attempts, Error: ra.Error, UpdatedAt: ra.UpdatedAt}
		}
		out.Failures = &list
		return out, nil
	})
}

type retryFailedDTO struct {
	Retried int           `json:"retried"`
	Run     invoiceRunDTO `json:"run"`
}

// retryFailedAccounts: POST /v1/admin/invoicing/runs/{id}/retry-failed
// moves the run's failed accounts back to pending; the workers bill them
// again and the run completes once more.
func (s *Server) retryFailedAccounts(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionInvoiceRunRetry, req.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		n, run, events, err := invoicing.ResetFailedAccounts(ctx, tx, id)
		if err != nil {
			return change{}, err
		}
		e.Target, e.Count = "invoice_run:"+id.String(), auditCount(n)
		if err := s.audit(ctx, tx, e); err != nil {
			return change{}, err
		}
		out, err := runWithProgress(ctx, tx, run)
		return change{http.StatusOK, retryFailedDTO{Retried: n, Run: out}, events}, err
	})
}

type invoiceLineDTO struct {
	Position    int        `json:"position"`
	Kind        string     `json:"kind"`
	OrderID     uuid.UUID  `json:"order_id"`
	ReturnID    *uuid.UUID `json:"return_id"`
	Description string     `json:"description"`
	OccurredAt  time.Time  `json:"occurred_at"`
	AmountMinor int64      `json:"amount_minor"`
	Late        bool       `json:"late"`
}

type invoiceDTO struct {
	ID            uuid.UUID         `json:"id"`
	Number        string            `json:"number"`
	RunID         uuid.UUID         `json:"run_id"`
	AccountID     uuid.UUID         `json:"account_id"`
	AccountName   string            `json:"account_name"`
	BillingEmail  string            `json:"billing_email"`
	VATID         string            `json:"vat_id"`
	PeriodStart   string            `json:"period_start"`
	PeriodEnd     string            `json:"period_end"`
	Timezone      string            `json:"timezone"`
	Currency      string            `json:"currency"`
	OrdersMinor   int64             `json:"orders_minor"`
	CreditsMinor  int64             `json:"credits_minor"`
	SubtotalMinor int64             `json:"subtotal_minor"`
	TaxRateBps    int               `json:"tax_rate_bps"`
	TaxMinor      int64             `json:"tax_minor"`
	TotalMinor    int64             `json:"total_minor"`
	IssuedAt      time.Time         `json:"issued_at"`
	DueOn         string            `json:"due_on"`
	PDF           string            `json:"pdf"`
	Lines         *[]invoiceLineDTO `json:"lines,omitempty"`
}

func invoiceOut(inv store.Invoice) invoiceDTO {
	return invoiceDTO{
		ID: inv.ID, Number: inv.Number, RunID: inv.RunID, AccountID: inv.AccountID, AccountName: inv.AccountName,
		BillingEmail: inv.BillingEmail, VATID: inv.VATID,
		PeriodStart: inv.PeriodStart.Format(store.DateLayout), PeriodEnd: inv.PeriodEnd.AddDate(0, 0, -1).Format(store.DateLayout),
		Timezone: inv.Timezone, Currency: inv.Currency,
		OrdersMinor: inv.OrdersMinor, CreditsMinor: inv.CreditsMinor, SubtotalMinor: inv.SubtotalMinor,
		TaxRateBps: inv.TaxRateBps, TaxMinor: inv.TaxMinor, TotalMinor: inv.TotalMinor,
		IssuedAt: inv.IssuedAt, DueOn: inv.DueOn.Format(store.DateLayout),
		PDF: "/v1/invoices/" + inv.ID.String() + "/pdf",
	}
}

// listInvoices: GET /v1/invoices, newest first, by account, run, period
// (its first day) and currency.
func (s *Server) listInvoices(c *gin.Context) {
	var f store.InvoiceFilter
	var err error
	if f.AccountID, err = queryID(c, "account_id"); err != nil {
		s.fail(c, err)
		return
	}
	if f.RunID, err = queryID(c, "run_id"); err != nil {
		s.fail(c, err)
		return
	}
	if v, ok := c.GetQuery("period_start"); ok {
		d, err := time.Parse(store.DateLayout, v)
		if err != nil {
			s.fail(c, badParam("period_start", "must be a date such as 2026-10-15"))
			return
		}
		f.PeriodStart = &d
	}
	if v, ok := c.GetQuery("currency"); ok {
		var k checker
		if k.currency("currency", v); k.err() != nil {
			s.fail(c, badParam("currency", "must be an ISO 4217 currency code such as EUR"))
			return
		}
		f.Currency = v
	}
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, next, err := store.ListInvoices(ctx, q, f, p)
		return listOf(rows, next, invoiceOut), err
	})
}

// getInvoice: GET /v1/invoices/{id}, as JSON with its lines, or as the PDF
// when the client accepts application/pdf rather than JSON.
func (s *Server) getInvoice(c *gin.Context) {
	if c.NegotiateFormat(contentTypeJSON, contentTypePDF) == contentTypePDF {
		s.getInvoicePDF(c)
		return
	}
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		inv, err := store.GetInvoice(ctx, q, id)
		if err != nil {
			return nil, err
		}
		lines, err := store.InvoiceLines(ctx, q, id)
		if err != nil {
			return nil, err
		}
		out := invoiceOut(inv)
		ls := make([]invoiceLineDTO, len(lines))
		for i, l := range lines {
			ls[i] = invoiceLineDTO{
				Position: l.Position, Kind: l.Kind, OrderID: l.OrderID, ReturnID: l.ReturnID,
				Description: l.Description, OccurredAt: l.OccurredAt, AmountMinor: l.AmountMinor, Late: l.Late,
			}
		}
		out.Lines = &ls
		return out, nil
	})
}

// getInvoicePDF: GET /v1/invoices/{id}/pdf. An invoice never changes, so
// its PDF may be cached for good.
func (s *Server) getInvoicePDF(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	inv, err := store.GetInvoice(ctx, s.cfg.DB, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	pdf, err := workers.RenderInvoicePDF(ctx, s.cfg.DB, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Content-Disposition", `inline; filename="`+workers.InvoicePDFName(inv)+`"`)
	c.Header("Cache-Control", "private, max-age=31536000, immutable")
	c.Data(http.StatusOK, contentTypePDF, pdf)
}
