package printers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/api/printers/receipt"
	"github.com/bazaarhq/bazaar/sql/store"
)

// Errors the handlers pass to Config.Fail; the API maps them to statuses.
var (
	// ErrUnauthorized: no HTTP Basic credentials, or not a printer's id and
	// token. The handler has set WWW-Authenticate: Basic.
	ErrUnauthorized = errors.New("printer credentials missing or invalid")
	// ErrWrongProtocol: the printer was registered for another protocol.
	ErrWrongProtocol = errors.New("printer registered for another protocol")
	// ErrPollTooFast: a poll came sooner than MinPollGap after the last
	// one. The handler has set Retry-After.
	ErrPollTooFast = errors.New("printer polls faster than allowed")
)

// ParamError is a bad query or form parameter of a printer request.
type ParamError struct {
	Name    string
	Message string
}

func (e *ParamError) Error() string { return "parameter " + e.Name + ": " + e.Message }

// Defaults of Config.
const (
	DefaultConfirmWithin = 60 * time.Second
	DefaultMinPollGap    = time.Second
	DefaultMaxJobs       = 20
)

// Config holds the dependencies and settings of the printer handlers.
type Config struct {
	DB     *sqlx.DB
	Logger *slog.Logger
	// Fail answers a request with the problem for err and stops the chain.
	Fail func(c *gin.Context, err error)
	// Now is the clock (time.Now when nil); every time the handlers record
	// or compare comes from it.
	Now func() time.Time
	// ConfirmWithin is how long a fetched job waits for its confirmation
	// before it turns unconfirmed (60 s).
	ConfirmWithin time.Duration
	// MinPollGap is the shortest time allowed between two polls of one
	// printer (1 s); a sooner poll is a 429 and records nothing.
	MinPollGap time.Duration
	// MaxJobs caps the receipts in one Epson GetRequest answer (20); the
	// 2 MB limit of Server Direct Print caps them too.
	MaxJobs int
}

// Handler serves the printer protocols.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and fills in its defaults.
func New(cfg Config) (*Handler, error) {
	if cfg.DB == nil {
		return nil, errors.New("printers: DB is required")
	}
	if cfg.Fail == nil {
		return nil, errors.New("printers: Fail is required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	clock := cfg.Now
	if clock == nil {
		clock = time.Now
	}
	// PostgreSQL keeps microseconds; times compared with stored ones must
	// not carry more.
	cfg.Now = func() time.Time { return clock().Truncate(time.Microsecond) }
	cfg.ConfirmWithin = cmp.Or(cfg.ConfirmWithin, DefaultConfirmWithin)
	cfg.MinPollGap = cmp.Or(cfg.MinPollGap, DefaultMinPollGap)
	cfg.MaxJobs = cmp.Or(cfg.MaxJobs, DefaultMaxJobs)
	return &Handler{cfg: cfg, log: cfg.Logger}, nil
}

// ConfirmWithin is how long a fetched job waits for its confirmation.
func (h *Handler) ConfirmWithin() time.Duration { return h.cfg.ConfirmWithin }

// Now is the handlers' clock.
func (h *Handler) Now() time.Time { return h.cfg.Now() }

// basicRealm names the printer endpoints in WWW-Authenticate.
const basicRealm = `Basic realm="bazaar printers", charset="UTF-8"`

// authenticate resolves HTTP Basic credentials to the printer, which must
// be registered for protocol; on failure it has answered.
func (h *Handler) authenticate(c *gin.Context, protocol store.PrinterProtocol) (store.Printer, bool) {
	user, pass, ok := c.Request.BasicAuth()
	id, err := uuid.Parse(user)
	if !ok || err != nil || pass == "" {
		c.Header("WWW-Authenticate", basicRealm)
		h.cfg.Fail(c, ErrUnauthorized)
		return store.Printer{}, false
	}
	p, err := store.PrinterByCredentials(c.Request.Context(), h.cfg.DB, id, store.HashKey(pass))
	if errors.Is(err, store.ErrNotFound) {
		c.Header("WWW-Authenticate", basicRealm)
		h.cfg.Fail(c, ErrUnauthorized)
		return store.Printer{}, false
	}
	if err != nil {
		h.cfg.Fail(c, err)
		return store.Printer{}, false
	}
	if p.Protocol != protocol {
		h.cfg.Fail(c, ErrWrongProtocol)
		return store.Printer{}, false
	}
	return p, true
}

// poll records a poll of p (seen now, with its status) and hands out up
// to limit jobs, in one transaction. A poll sooner than MinPollGap after
// the last one records nothing and returns ErrPollTooFast.
func (h *Handler) poll(ctx context.Context, c *gin.Context, p store.Printer, status, mac string, limit int, fetch bool) ([]store.PrintJob, error) {
	now := h.cfg.Now()
	var jobs []store.PrintJob
	err := store.WithTx(ctx, h.cfg.DB, func(tx *sqlx.Tx) error {
		prev, err := store.TouchPrinter(ctx, tx, p.KeyID, now, true, status, mac)
		if err != nil {
			return err
		}
		if prev != nil && now.Sub(*prev) < h.cfg.MinPollGap {
			wait := h.cfg.MinPollGap - now.Sub(*prev)
			c.Header("Retry-After", retryAfter(wait))
			return ErrPollTooFast
		}
		jobs, err = store.NextPrintJobs(ctx, tx, p, now, h.cfg.ConfirmWithin, limit)
		if err != nil || !fetch {
			return err
		}
		ids := make([]int64, len(jobs))
		for i, j := range jobs {
			ids[i] = j.ID
		}
		return store.MarkPrintJobsFetched(ctx, tx, p.KeyID, now, ids...)
	})
	return jobs, err
}

func retryAfter(d time.Duration) string {
	secs := int((d + time.Second - 1) / time.Second)
	return strconv.Itoa(max(secs, 1))
}

// receiptOf loads the order of a job and sets it as a receipt.
func receiptOf(ctx context.Context, q sqlx.QueryerContext, j store.PrintJob) (receipt.Receipt, error) {
	o, err := store.GetOrder(ctx, q, j.OrderID)
	if err != nil {
		return receipt.Receipt{}, err
	}
	r := receipt.Receipt{
		OrderID:       o.ID.String(),
		PlacedAt:      o.CreatedAt,
		ScheduledAt:   o.ScheduledAt,
		Currency:      o.Currency,
		SubtotalMinor: o.SubtotalMinor,
		TotalMinor:    o.TotalMinor,
	}
	for _, it := range o.Items {
		r.Items = append(r.Items, receipt.Item{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, LineTotalMinor: it.LineTotalMinor})
	}
	return r, nil
}

// clean keeps a printer-sent value printable and short before it is stored.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

// empty answers 200 with no body, what both protocols expect when there
// is nothing to say.
func empty(c *gin.Context) {
	c.Header("Content-Length", "0")
	c.Status(http.StatusOK)
}
