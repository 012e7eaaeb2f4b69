package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// PrinterProtocol is how a printer learns of orders.
type PrinterProtocol string

// The printer protocols.
const (
	// ProtocolSSE printers follow GET /v1/sellers/{id}/events (cmd/printer).
	ProtocolSSE PrinterProtocol = "sse"
	// ProtocolCloudPRNT printers poll with Star CloudPRNT (HTTP method).
	ProtocolCloudPRNT PrinterProtocol = "cloudprnt"
	// ProtocolEpsonSDP printers poll with Epson Server Direct Print.
	ProtocolEpsonSDP PrinterProtocol = "epson-sdp"
)

// Valid reports whether p is one of the protocols.
func (p PrinterProtocol) Valid() bool {
	switch p {
	case ProtocolSSE, ProtocolCloudPRNT, ProtocolEpsonSDP:
		return true
	}
	return false
}

// Printer is a printer token's device settings and what Bazaar last heard
// from it.
type Printer struct {
	KeyID               uuid.UUID       `db:"key_id"`
	SellerID            uuid.UUID       `db:"seller_id"`
	Protocol            PrinterProtocol `db:"protocol"`
	PollIntervalSeconds int             `db:"poll_interval_seconds"`
	DotWidth            int             `db:"dot_width"`
	LastSeenAt          *time.Time      `db:"last_seen_at"`
	Status              string          `db:"status"`
	MAC                 string          `db:"mac"`
}

const printerColumns = `key_id, seller_id, protocol, poll_interval_seconds, dot_width, last_seen_at, status, mac`

const createPrinterQuery = `
INSERT INTO printers (key_id, seller_id, protocol, poll_interval_seconds, dot_width)
VALUES ($1, $2, $3, $4, $5)
RETURNING ` + printerColumns

// CreatePrinter records the device settings of a new printer token.
func CreatePrinter(ctx context.Context, q sqlx.QueryerContext, p Printer) (Printer, error) {
	var out Printer
	if err := sqlx.GetContext(ctx, q, &out, createPrinterQuery, p.KeyID, p.SellerID, p.Protocol, p.PollIntervalSeconds, p.DotWidth); err != nil {
		return Printer{}, fmt.Errorf("create printer: %w", translate(err))
	}
	return out, nil
}

// The key must be an unrevoked printer key; tokens made before printers
// existed read as SSE printers with the default settings.
const printerByKeyQuery = `
SELECT k.id AS key_id, k.seller_id, coalesce(p.protocol, 'sse') AS protocol,
       coalesce(p.poll_interval_seconds, 5) AS poll_interval_seconds,
       coalesce(p.dot_width, 576) AS dot_width, p.last_seen_at,
       coalesce(p.status, '') AS status, coalesce(p.mac, '') AS mac
FROM api_keys k LEFT JOIN printers p ON p.key_id = k.id
WHERE k.id = $1 AND k.key_hash = $2 AND k.role = 'printer' AND k.revoked_at IS NULL`

// PrinterByCredentials returns the printer whose key id is id and whose
// secret hashes to hash; ErrNotFound for a wrong pair, a revoked key or a
// key that is no printer's.
func PrinterByCredentials(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, hash []byte) (Printer, error) {
	var p Printer
	if err := sqlx.GetContext(ctx, q, &p, printerByKeyQuery, id, hash); err != nil {
		return Printer{}, fmt.Errorf("printer %s: %w", id, translate(err))
	}
	return p, nil
}

// The old row is read in the same statement, so the caller learns when the
// printer was seen before this call.
const touchPrinterQuery = `
WITH old AS (
    SELECT key_id, last_seen_at FROM printers WHERE key_id = $1 FOR UPDATE
)
UPDATE printers p SET last_seen_at = $2,
    status = CASE WHEN $3 THEN $4 ELSE p.status END,
    mac = CASE WHEN $5 = '' THEN p.mac ELSE $5 END
FROM old WHERE p.key_id = old.key_id
RETURNING old.last_seen_at`

// TouchPrinter records that a printer was seen at now, with its status when
// setStatus is set and its MAC address when mac is not empty. It returns
// when the printer was seen before (nil the first time).
func TouchPrinter(ctx context.Context, q sqlx.QueryerContext, keyID uuid.UUID, now time.Time, setStatus bool, status, mac string) (*time.Time, error) {
	var prev *time.Time
	if err := sqlx.GetContext(ctx, q, &prev, touchPrinterQuery, keyID, now, setStatus, status, mac); err != nil {
		return nil, fmt.Errorf("touch printer %s: %w", keyID, translate(err))
	}
	return prev, nil
}

// PrintJobState is where a print job stands.
type PrintJobState string

// The states of a print job.
const (
	// JobOffered: the printer was told of the job and has not fetched it.
	JobOffered PrintJobState = "offered"
	// JobPrinting: fetched, waiting for the printer's confirmation.
	JobPrinting PrintJobState = "printing"
	// JobUnconfirmed: fetched but not confirmed in time, or reported as
	// failed. Never handed out again unless a person asks (ResendPrintJob).
	JobUnconfirmed PrintJobState = "unconfirmed"
	// JobPrinted: the order is acknowledged as printed.
	JobPrinted PrintJobState = "printed"
)

// PrintJob is an order handed to a polling printer.
type PrintJob struct {
	ID             int64      `db:"id"`
	OrderID        uuid.UUID  `db:"order_id"`
	PrinterKeyID   uuid.UUID  `db:"printer_key_id"`
	SellerID       uuid.UUID  `db:"seller_id"`
	OfferedAt      time.Time  `db:"offered_at"`
	FetchedAt      *time.Time `db:"fetched_at"`
	ConfirmedAt    *time.Time `db:"confirmed_at"`
	FailedAt       *time.Time `db:"failed_at"`
	ErrorCode      string     `db:"error_code"`
	Resends        int        `db:"resends"`
	Printed        bool       `db:"printed"`
	OrderCreatedAt time.Time  `db:"order_created_at"`
}

// Token is the job token a printer echoes (CloudPRNT jobToken, Epson
// printjobid): at most 30 characters of [A-Za-z0-9].
func (j PrintJob) Token() string { return "bz" + strconv.FormatInt(j.ID, 10) }

// ParseJobToken returns the job id of a token; false for anything Token
// cannot have made.
func ParseJobToken(token string) (int64, bool) {
	rest, ok := strings.CutPrefix(token, "bz")
	if !ok || rest == "" || len(rest) > 19 || strings.TrimLeft(rest, "0123456789") != "" {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	return id, err == nil
}

// State is the job's state at now, fetched jobs turning unconfirmed after
// confirmWithin.
func (j PrintJob) State(now time.Time, confirmWithin time.Duration) PrintJobState {
	switch {
	case j.Printed || j.ConfirmedAt != nil:
		return JobPrinted
	case j.FailedAt != nil:
		return JobUnconfirmed
	case j.FetchedAt == nil:
		return JobOffered
	case !j.FetchedAt.After(now.Add(-confirmWithin)):
		return JobUnconfirmed
	}
	return JobPrinting
}

const printJobColumns = `j.id, j.order_id, j.printer_key_id, j.seller_id, j.offered_at, j.fetched_at,
    j.confirmed_at, j.failed_at, j.error_code, j.resends,
    EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = j.order_id) AS printed,
    o.created_at AS order_created_at`

// Jobs of one printer still to print or printing: not confirmed, not
// failed, not acknowledged by any printer, not fetched before $2.
const openPrintJobsQuery = `
SELECT ` + printJobColumns + `
FROM print_jobs j JOIN orders o ON o.id = j.order_id
WHERE j.printer_key_id = $1 AND j.confirmed_at IS NULL AND j.failed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = j.order_id)
  AND (j.fetched_at IS NULL OR j.fetched_at > $2)
ORDER BY o.created_at, o.id`

// Hands the seller's oldest orders that no printer printed and no job
// holds to the printer.
const offerPrintJobsQuery = `
INSERT INTO print_jobs (order_id, printer_key_id, seller_id, offered_at)
SELECT o.id, $1, o.seller_id, $3 FROM orders o
WHERE o.seller_id = $2
  AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = o.id)
  AND NOT EXISTS (SELECT 1 FROM print_jobs j WHERE j.order_id = o.id)
ORDER BY o.created_at, o.id
LIMIT $4
ON CONFLICT (order_id) DO NOTHING`

// NextPrintJobs returns up to limit jobs for a polling printer, oldest
// order first: the jobs it was offered and has not fetched, then new jobs
// for the seller's unprinted orders. A printer with a job fetched after
// now-confirmWithin and not yet confirmed gets none: it is printing, and
// the next job waits for its answer. Unconfirmed jobs are skipped, never
// offered again.
func NextPrintJobs(ctx context.Context, q sqlx.ExtContext, printer Printer, now time.Time, confirmWithin time.Duration, limit int) ([]PrintJob, error) {
	open, err := openPrintJobs(ctx, q, printer.KeyID, now.Add(-confirmWithin))
	if err != nil {
		return nil, err
	}
	for _, j := range open {
		if j.FetchedAt != nil {
			return nil, nil
		}
	}
	if len(open) >= limit {
		return open[:limit], nil
	}
	if _, err := q.ExecContext(ctx, offerPrintJobsQuery, printer.KeyID, printer.SellerID, now, limit-len(open)); err != nil {
		return nil, fmt.Errorf("offer print jobs: %w", translate(err))
	}
	open, err = openPrintJobs(ctx, q, printer.KeyID, now.Add(-confirmWithin))
	if err != nil {
		return nil, err
	}
	return open[:min(limit, len(open))], nil
}

func openPrintJobs(ctx context.Context, q sqlx.QueryerContext, keyID uuid.UUID, cutoff time.Time) ([]PrintJob, error) {
	out := []PrintJob{}
	if err := sqlx.SelectContext(ctx, q, &out, openPrintJobsQuery, keyID, cutoff); err != nil {
		return nil, fmt.Errorf("open print jobs: %w", translate(err))
	}
	return out, nil
}

const printJobQuery = `
SELECT ` + printJobColumns + `
FROM print_jobs j JOIN orders o ON o.id = j.order_id
WHERE j.id = $1 AND j.printer_key_id = $2`

// GetPrintJob returns a job of one printer; ErrNotFound for another
// printer's job.
func GetPrintJob(ctx context.Context, q sqlx.QueryerContext, id int64, printerKeyID uuid.UUID) (PrintJob, error) {
	var j PrintJob
	if err := sqlx.GetContext(ctx, q, &j, printJobQuery, id, printerKeyID); err != nil {
		return PrintJob{}, fmt.Errorf("print job %d: %w", id, translate(err))
	}
	return j, nil
}

const markFetchedQuery = `
UPDATE print_jobs SET fetched_at = coalesce(fetched_at, $3)
WHERE id = ANY($1) AND printer_key_id = $2`

// MarkPrintJobsFetched records that a printer fetched jobs at now; a job
// fetched before keeps its first time, so fetching again changes nothing.
func MarkPrintJobsFetched(ctx context.Context, q sqlx.ExecerContext, printerKeyID uuid.UUID, now time.Time, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := q.ExecContext(ctx, markFetchedQuery, pq.Array(ids), printerKeyID, now); err != nil {
		return fmt.Errorf("mark print jobs fetched: %w", translate(err))
	}
	return nil
}

const confirmPrintJobQuery = `
UPDATE print_jobs SET confirmed_at = coalesce(confirmed_at, $3), fetched_at = coalesce(fetched_at, $3)
WHERE id = $1 AND printer_key_id = $2
RETURNING order_id, seller_id`

// ConfirmPrintJob records that a printer printed a job and acknowledges its
// order, the same acknowledgement as POST /v1/printers/{id}/acks. A late
// confirmation, after the job turned unconfirmed, is recorded the same way;
// a repeated one changes nothing. ErrNotFound for another printer's job.
func ConfirmPrintJob(ctx context.Context, q sqlx.QueryerContext, id int64, printerKeyID uuid.UUID, now time.Time) (PrinterAck, error) {
	var row struct {
		OrderID  uuid.UUID `db:"order_id"`
		SellerID uuid.UUID `db:"seller_id"`
	}
	if err := sqlx.GetContext(ctx, q, &row, confirmPrintJobQuery, id, printerKeyID, now); err != nil {
		return PrinterAck{}, fmt.Errorf("confirm print job %d: %w", id, translate(err))
	}
	ack, _, err := AckOrder(ctx, q, printerKeyID, row.SellerID, row.OrderID)
	return ack, err
}

const failPrintJobQuery = `
UPDATE print_jobs SET failed_at = coalesce(failed_at, $3), error_code = $4,
    fetched_at = coalesce(fetched_at, $3)
WHERE id = $1 AND printer_key_id = $2 AND confirmed_at IS NULL`

// FailPrintJob records the error code a printer reported for a job, which
// makes it unconfirmed: it is not offered again until a person asks. A job
// already confirmed stays printed. ErrNotFound for another printer's job.
func FailPrintJob(ctx context.Context, q sqlx.ExtContext, id int64, printerKeyID uuid.UUID, now time.Time, code string) error {
	if _, err := GetPrintJob(ctx, q, id, printerKeyID); err != nil {
		return err
	}
	if _, err := q.ExecContext(ctx, failPrintJobQuery, id, printerKeyID, now, code); err != nil {
		return fmt.Errorf("fail print job %d: %w", id, translate(err))
	}
	return nil
}

const failFetchedQuery = `
UPDATE print_jobs SET failed_at = $3, error_code = $4
WHERE printer_key_id = $1 AND confirmed_at IS NULL AND failed_at IS NULL
  AND fetched_at IS NOT NULL AND fetched_at > $2`

// FailFetchedPrintJobs records code on every job a printer fetched since
// cutoff and has not answered for (a printer that rejected the whole
// request), making them unconfirmed.
func FailFetchedPrintJobs(ctx context.Context, q sqlx.ExecerContext, printerKeyID uuid.UUID, cutoff, now time.Time, code string) error {
	if _, err := q.ExecContext(ctx, failFetchedQuery, printerKeyID, cutoff, now, code); err != nil {
		return fmt.Errorf("fail fetched print jobs: %w", translate(err))
	}
	return nil
}

// ErrNotUnconfirmed is returned when a resend is asked for an order whose
// job is not unconfirmed: printed, still printing, or never handed out.
var ErrNotUnconfirmed = errors.New("print job is not unconfirmed")

const resendPrintJobQuery = `
UPDATE print_jobs j SET fetched_at = NULL, failed_at = NULL, error_code = '',
    offered_at = $3, resends = resends + 1
WHERE j.order_id = $1 AND j.seller_id = $2 AND j.confirmed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = j.order_id)
  AND (j.failed_at IS NOT NULL OR j.fetched_at <= $4)`

// ResendPrintJob hands an unconfirmed job back to its printer, which
// prints it at its next poll. ErrNotFound when the seller has no such
// order; ErrNotUnconfirmed (wrapping ErrInvalidTransition) when its job is
// not unconfirmed.
func ResendPrintJob(ctx context.Context, q sqlx.ExtContext, sellerID, orderID uuid.UUID, now time.Time, confirmWithin time.Duration) error {
	o, err := GetOrder(ctx, q, orderID)
	if err != nil {
		return err
	}
	if o.SellerID != sellerID {
		return fmt.Errorf("order %s: %w", orderID, ErrNotFound)
	}
	res, err := q.ExecContext(ctx, resendPrintJobQuery, orderID, sellerID, now, now.Add(-confirmWithin))
	if err != nil {
		return fmt.Errorf("resend print job: %w", translate(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("resend order %s: %w", orderID, errors.Join(ErrNotUnconfirmed, ErrInvalidTransition))
	}
	return nil
}

const unconfirmedPrintJobsQuery = `
SELECT ` + printJobColumns + `
FROM print_jobs j JOIN orders o ON o.id = j.order_id
WHERE j.seller_id = $1 AND j.confirmed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = j.order_id)
  AND (j.failed_at IS NOT NULL OR j.fetched_at <= $2)
ORDER BY o.created_at, o.id
LIMIT 1000`

// UnconfirmedPrintJobs returns a seller's unconfirmed jobs (at most 1,000),
// oldest order first: the receipts a person has to check.
func UnconfirmedPrintJobs(ctx context.Context, q sqlx.QueryerContext, sellerID uuid.UUID, now time.Time, confirmWithin time.Duration) ([]PrintJob, error) {
	out := []PrintJob{}
	if err := sqlx.SelectContext(ctx, q, &out, unconfirmedPrintJobsQuery, sellerID, now.Add(-confirmWithin)); err != nil {
		return nil, fmt.Errorf("unconfirmed print jobs: %w", translate(err))
	}
	return out, nil
}

// PrinterSummary is one printer of a seller as the printers list shows it.
type PrinterSummary struct {
	Printer
	Name        string     `db:"name"`
	CreatedAt   time.Time  `db:"created_at"`
	RevokedAt   *time.Time `db:"revoked_at"`
	LastAckAt   *time.Time `db:"last_ack_at"`
	Unprinted   int        `db:"unprinted"`
	Unconfirmed int        `db:"unconfirmed"`
}

const listPrintersQuery = `
SELECT k.id AS key_id, k.seller_id, coalesce(p.protocol, 'sse') AS protocol,
       coalesce(p.poll_interval_seconds, 5) AS poll_interval_seconds,
       coalesce(p.dot_width, 576) AS dot_width, p.last_seen_at,
       coalesce(p.status, '') AS status, coalesce(p.mac, '') AS mac,
       k.name, k.created_at, k.revoked_at,
       (SELECT max(a.acked_at) FROM printer_acks a WHERE a.printer_key_id = k.id) AS last_ack_at,
       (SELECT count(*) FROM orders o WHERE o.seller_id = k.seller_id
          AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = o.id)) AS unprinted,
       (SELECT count(*) FROM print_jobs j WHERE j.printer_key_id = k.id AND j.confirmed_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = j.order_id)
          AND (j.failed_at IS NOT NULL OR j.fetched_at <= $2)) AS unconfirmed
FROM api_keys k LEFT JOIN printers p ON p.key_id = k.id
WHERE k.seller_id = $1 AND k.role = 'printer'
ORDER BY k.created_at, k.id`

// ListPrinters returns a seller's printers (revoked ones too), oldest
// first, with the seller's unprinted orders and each printer's
// unconfirmed jobs counted at now.
func ListPrinters(ctx context.Context, q sqlx.QueryerContext, sellerID uuid.UUID, now time.Time, confirmWithin time.Duration) ([]PrinterSummary, error) {
	out := []PrinterSummary{}
	if err := sqlx.SelectContext(ctx, q, &out, listPrintersQuery, sellerID, now.Add(-confirmWithin)); err != nil {
		return nil, fmt.Errorf("list printers: %w", translate(err))
	}
	return out, nil
}

// PrinterCount is how many unrevoked polling printers of one protocol
// there are, and how many of them polled recently enough to be online.
type PrinterCount struct {
	Protocol PrinterProtocol `db:"protocol"`
	Total    int             `db:"total"`
	Online   int             `db:"online"`
}

const countPrintersQuery = `
SELECT p.protocol, count(*) AS total,
       count(*) FILTER (WHERE p.last_seen_at >= $1::timestamptz
           - make_interval(secs => 2 * p.poll_interval_seconds + 5)) AS online
FROM printers p JOIN api_keys k ON k.id = p.key_id
WHERE k.revoked_at IS NULL AND p.protocol <> 'sse'
GROUP BY p.protocol ORDER BY p.protocol`

// CountPrinters counts the polling printers by protocol at now; a printer
// not seen for 2 x its poll interval + 5 s is offline.
func CountPrinters(ctx context.Context, q sqlx.QueryerContext, now time.Time) ([]PrinterCount, error) {
	out := []PrinterCount{}
	if err := sqlx.SelectContext(ctx, q, &out, countPrintersQuery, now); err != nil {
		return nil, fmt.Errorf("count printers: %w", translate(err))
	}
	return out, nil
}

const countUnconfirmedQuery = `
SELECT count(*) FROM print_jobs j
WHERE j.confirmed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = j.order_id)
  AND (j.failed_at IS NOT NULL OR j.fetched_at <= $1)`

// CountUnconfirmedPrintJobs counts the unconfirmed jobs of every seller at
// now.
func CountUnconfirmedPrintJobs(ctx context.Context, q sqlx.QueryerContext, now time.Time, confirmWithin time.Duration) (int, error) {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, countUnconfirmedQuery, now.Add(-confirmWithin)); err != nil {
		return 0, fmt.Errorf("count unconfirmed print jobs: %w", translate(err))
	}
	return n, nil
}
