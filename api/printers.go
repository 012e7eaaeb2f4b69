package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/api/printers"
	"github.com/bazaarhq/bazaar/sql/store"
)

type printerAckRequest struct {
	OrderID string `json:"order_id"`
}

type printerAckDTO struct {
	OrderID   uuid.UUID `json:"order_id"`
	PrinterID uuid.UUID `json:"printer_id"`
	SellerID  uuid.UUID `json:"seller_id"`
	AckedAt   time.Time `json:"acked_at"`
}

// ackOrder: POST /v1/printers/{id}/acks (the printer itself, {id} being its
// token's key id). A printer acknowledges each order it printed; repeating
// an acknowledgement answers 200 with the first one. Another printer's id,
// or another seller's order, is 404.
func (s *Server) ackOrder(c *gin.Context) {
	printerID, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	p := principalOf(c)
	if p.KeyID != printerID {
		s.fail(c, store.ErrNotFound)
		return
	}
	var req printerAckRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	orderID := k.id("order_id", req.OrderID)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		ack, created, err := store.AckOrder(ctx, tx, printerID, p.SellerID, *orderID)
		if err != nil {
			return change{}, err
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		return change{status: status, body: printerAckDTO{OrderID: ack.OrderID, PrinterID: ack.PrinterKeyID, SellerID: ack.SellerID, AckedAt: ack.AckedAt}}, nil
	})
}

// listUnprintedOrders: GET /v1/sellers/{id}/unprinted-orders (admin, the
// seller, its printers): the seller's orders no printer acknowledged,
// oldest first, so a printer that lost its place can print what it missed.
func (s *Server) listUnprintedOrders(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, id); err != nil {
			return nil, err
		}
		rows, next, err := store.UnprintedOrders(ctx, q, id, pg)
		return listOf(rows, next, orderOut), err
	})
}

// PrintersConfig tunes the polling printer protocols (api/printers); zero
// fields take the package's defaults.
type PrintersConfig struct {
	// Now is the clock of the printer routes (time.Now when nil).
	Now func() time.Time
	// ConfirmWithin is how long a fetched job waits for its confirmation
	// before it turns unconfirmed (60 s).
	ConfirmWithin time.Duration
	// MinPollGap is the shortest time allowed between two polls of one
	// printer (1 s); sooner polls get 429.
	MinPollGap time.Duration
	// MaxJobs caps the receipts of one Epson GetRequest answer (20).
	MaxJobs int
}

// errPrinterPollTooFast is a printer poll sooner than PrintersConfig.MinPollGap allows.
var errPrinterPollTooFast = errors.New("printer polls too fast")

func (s *Server) newPrinters() (*printers.Handler, error) {
	h, err := printers.New(printers.Config{
		DB: s.cfg.DB, Logger: s.log.With("component", "printers"), Fail: s.failPrinter,
		Now: s.cfg.Printers.Now, ConfirmWithin: s.cfg.Printers.ConfirmWithin,
		MinPollGap: s.cfg.Printers.MinPollGap, MaxJobs: s.cfg.Printers.MaxJobs,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if s.cfg.Registry != nil {
		if _, err := register(s.cfg.Registry, h.Collector()); err != nil {
			return nil, fmt.Errorf("api: printer metrics: %w", err)
		}
	}
	return h, nil
}

// failPrinter gives the printer handlers' errors their API kinds and
// answers with fail.
func (s *Server) failPrinter(c *gin.Context, err error) {
	var pe *printers.ParamError
	switch {
	case errors.Is(err, printers.ErrUnauthorized):
		err = withDetail(errUnauthorized, "Send HTTP Basic credentials: the printer id as user name, the printer token as password.")
	case errors.Is(err, printers.ErrWrongProtocol):
		err = withDetail(errForbidden, "This printer token is registered for another protocol.")
	case errors.Is(err, printers.ErrPollTooFast):
		err = withDetail(errPrinterPollTooFast, "Poll less often: wait the seconds Retry-After says.")
	case errors.As(err, &pe):
		err = badParam(pe.Name, pe.Message)
	}
	s.fail(c, err)
}

type createPrinterTokenRequest struct {
	Name                string `json:"name"`
	Protocol            string `json:"protocol"`
	PollIntervalSeconds *int   `json:"poll_interval_seconds"`
	DotWidth            *int   `json:"dot_width"`
}

type printerTokenDTO struct {
	apiKeyDTO
	Protocol            store.PrinterProtocol `json:"protocol"`
	PollIntervalSeconds int                   `json:"poll_interval_seconds"`
	DotWidth            int                   `json:"dot_width"`
}

// withoutSecret keeps the printer's settings in the idempotency record:
// the embedded apiKeyDTO's method would drop them along with the secret.
func (t printerTokenDTO) withoutSecret() any {
	t.Key = ""
	return t
}

// createPrinterToken: POST /v1/sellers/{id}/printer-tokens (admin, the
// seller itself). The body may name the printer's protocol (sse,
// cloudprnt, epson-sdp; default sse), the poll interval it is set to (5 s,
// which tells when it is offline) and its paper's dot width (576, for
// image receipts). The secret is shown only in this response.
func (s *Server) createPrinterToken(c *gin.Context) {
	sellerID, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var req createPrinterTokenRequest
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	k.text("name", req.Name, false, 200)
	protocol := store.PrinterProtocol(req.Protocol)
	if req.Protocol == "" {
		protocol = store.ProtocolSSE
	}
	if !protocol.Valid() {
		k.add("protocol", "must be sse, cloudprnt or epson-sdp")
	}
	poll, dots := 5, 576
	if req.PollIntervalSeconds != nil {
		poll = *req.PollIntervalSeconds
		if poll < 1 || poll > 3600 {
			k.add("poll_interval_seconds", "must be between 1 and 3600")
		}
	}
	if req.DotWidth != nil {
		dots = *req.DotWidth
		if dots < 96 || dots > 2400 {
			k.add("dot_width", "must be between 96 and 2400")
		}
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if _, err := store.GetSeller(ctx, tx, sellerID); err != nil {
			return change{}, err
		}
		secret, err := newSecret(prefixPrinter)
		if err != nil {
			return change{}, err
		}
		key, err := store.CreateAPIKey(ctx, tx, store.KeyPrinter, &sellerID, req.Name, secret, displayPrefix(secret))
		if err != nil {
			return change{}, err
		}
		if err := s.auditKey(ctx, tx, c, ActionKeyCreate, key); err != nil {
			return change{}, err
		}
		p, err := store.CreatePrinter(ctx, tx, store.Printer{KeyID: key.ID, SellerID: sellerID, Protocol: protocol, PollIntervalSeconds: poll, DotWidth: dots})
		if err != nil {
			return change{}, err
		}
		out := printerTokenDTO{apiKeyDTO: apiKeyOut(key), Protocol: p.Protocol, PollIntervalSeconds: p.PollIntervalSeconds, DotWidth: p.DotWidth}
		out.Key = secret
		return change{status: http.StatusCreated, body: out}, nil
	})
}

type printerDTO struct {
	ID                  uuid.UUID             `json:"id"`
	Name                string                `json:"name"`
	Protocol            store.PrinterProtocol `json:"protocol"`
	PollIntervalSeconds int                   `json:"poll_interval_seconds"`
	DotWidth            int                   `json:"dot_width"`
	LastSeenAt          *time.Time            `json:"last_seen_at"`
	Online              *bool                 `json:"online"`
	Status              string                `json:"status"`
	LastAckAt           *time.Time            `json:"last_ack_at"`
	Unprinted           int                   `json:"unprinted"`
	Unconfirmed         int                   `json:"unconfirmed"`
	CreatedAt           time.Time             `json:"created_at"`
	RevokedAt           *time.Time            `json:"revoked_at"`
}

// offlineAfter is how long a polling printer may stay silent before it
// counts as offline: two poll intervals and 5 s.
func offlineAfter(pollSeconds int) time.Duration {
	return 2*time.Duration(pollSeconds)*time.Second + 5*time.Second
}

// listPrinters: GET /v1/sellers/{id}/printers (admin, the seller itself):
// the seller's printers with protocol, last seen, status, last
// acknowledgement, and unprinted and unconfirmed counts. online is null for
// SSE printers, which Bazaar does not see poll.
func (s *Server) listPrinters(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := s.printers.Now()
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, id); err != nil {
			return nil, err
		}
		rows, err := store.ListPrinters(ctx, q, id, now, s.printers.ConfirmWithin())
		return listOf(rows, nil, func(p store.PrinterSummary) printerDTO {
			out := printerDTO{
				ID: p.KeyID, Name: p.Name, Protocol: p.Protocol, PollIntervalSeconds: p.PollIntervalSeconds,
				DotWidth: p.DotWidth, LastSeenAt: p.LastSeenAt, Status: p.Status, LastAckAt: p.LastAckAt,
				Unprinted: p.Unprinted, Unconfirmed: p.Unconfirmed, CreatedAt: p.CreatedAt, RevokedAt: p.RevokedAt,
			}
			if p.Protocol != store.ProtocolSSE {
				online := p.LastSeenAt != nil && now.Sub(*p.LastSeenAt) <= offlineAfter(p.PollIntervalSeconds)
				out.Online = &online
			}
			return out
		}), err
	})
}

type printJobDTO struct {
	OrderID   uuid.UUID           `json:"order_id"`
	PrinterID uuid.UUID           `json:"printer_id"`
	JobToken  string              `json:"job_token"`
	State     store.PrintJobState `json:"state"`
	OfferedAt time.Time           `json:"offered_at"`
	FetchedAt *time.Time          `json:"fetched_at"`
	FailedAt  *time.Time          `json:"failed_at"`
	ErrorCode string              `json:"error_code"`
	Resends   int                 `json:"resends"`
}

// listUnconfirmedPrintJobs: GET /v1/sellers/{id}/print-jobs (admin, the
// seller itself): the jobs a polling printer fetched and did not confirm
// in time, or reported failed, with the printer's code. A person checks
// the printer and resends them.
func (s *Server) listUnconfirmedPrintJobs(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	now, within := s.printers.Now(), s.printers.ConfirmWithin()
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, id); err != nil {
			return nil, err
		}
		rows, err := store.UnconfirmedPrintJobs(ctx, q, id, now, within)
		return listOf(rows, nil, func(j store.PrintJob) printJobDTO {
			return printJobDTO{
				OrderID: j.OrderID, PrinterID: j.PrinterKeyID, JobToken: j.Token(), State: j.State(now, within),
				OfferedAt: j.OfferedAt, FetchedAt: j.FetchedAt, FailedAt: j.FailedAt, ErrorCode: j.ErrorCode, Resends: j.Resends,
			}
		}), err
	})
}

// resendPrintJob: POST /v1/sellers/{id}/print-jobs/{order_id}/resend
// (admin, the seller itself): hands an unconfirmed job back to its
// printer, which prints it at its next poll. Only a person does this, as
// the receipt may have printed after all. 409 when the order's job is not
// unconfirmed (printed, printing, or never handed out).
func (s *Server) resendPrintJob(c *gin.Context) {
	sellerID, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	orderID, err := pathID(c, "order_id")
	if err != nil {
		s.fail(c, err)
		return
	}
	now, within := s.printers.Now(), s.printers.ConfirmWithin()
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if err := store.ResendPrintJob(ctx, tx, sellerID, orderID, now, within); err != nil {
			return change{}, err
		}
		return change{status: http.StatusNoContent}, nil
	})
}
