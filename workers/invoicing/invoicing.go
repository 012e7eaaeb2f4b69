package invoicing

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/workers"
)

// How an invoice run was started.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
)

// Period is a billing period of whole calendar days: Start up to but not
// including End, both dates held as midnight UTC. Which instants those days
// cover depends on the time zone invoicing runs in.
type Period struct {
	Start time.Time
	End   time.Time
}

// maxPeriodDays bounds a period so a typo cannot bill years at once.
const maxPeriodDays = 92

// NewPeriod returns the period of the days from first to last, both
// included, checking that it is not empty and at most 92 days long.
func NewPeriod(first, last time.Time) (Period, error) {
	p := Period{Start: dateOf(first), End: dateOf(last).AddDate(0, 0, 1)}
	if !p.End.After(p.Start) {
		return Period{}, fmt.Errorf("period: last day %s is before first day %s", p.LastDay().Format(store.DateLayout), p.Key())
	}
	if p.End.Sub(p.Start) > maxPeriodDays*24*time.Hour {
		return Period{}, fmt.Errorf("period: %s is longer than %d days", p, maxPeriodDays)
	}
	return p, nil
}

// ParsePeriod is NewPeriod on dates written as 2006-01-02.
func ParsePeriod(first, last string) (Period, error) {
	f, err := time.Parse(store.DateLayout, first)
	if err != nil {
		return Period{}, fmt.Errorf("period: first day %q is not a date such as 2026-10-15", first)
	}
	l, err := time.Parse(store.DateLayout, last)
	if err != nil {
		return Period{}, fmt.Errorf("period: last day %q is not a date such as 2026-10-31", last)
	}
	return NewPeriod(f, l)
}

// PeriodBetween returns the period of the days from the day of from up to
// the day of to, excluded, as calendar days in loc: the period a schedule
// firing at to closes when it last fired at from.
func PeriodBetween(from, to time.Time, loc *time.Location) Period {
	return Period{Start: dateOf(from.In(loc)), End: dateOf(to.In(loc))}
}

func periodOf(run store.InvoiceRun) Period {
	return Period{Start: dateOf(run.PeriodStart), End: dateOf(run.PeriodEnd)}
}

func dateOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Key names the period by its first day ("2026-10-15"); task ids and
// schedule firings use it.
func (p Period) Key() string { return p.Start.Format(store.DateLayout) }

// LastDay returns the last day the period includes.
func (p Period) LastDay() time.Time { return p.End.AddDate(0, 0, -1) }

// String writes the period with both ends included: "2026-10-15..2026-10-31".
func (p Period) String() string {
	return p.Key() + ".." + p.LastDay().Format(store.DateLayout)
}

// Bounds returns the instants the period covers in loc: [from, to).
func (p Period) Bounds(loc *time.Location) (from, to time.Time) {
	from = time.Date(p.Start.Year(), p.Start.Month(), p.Start.Day(), 0, 0, 0, 0, loc)
	to = time.Date(p.End.Year(), p.End.Month(), p.End.Day(), 0, 0, 0, 0, loc)
	return from, to
}

// InvoiceRunTaskID is the asynq TaskID of a period's run task. It contains
// the period, so a later period is never blocked by an earlier one's task
// still kept in Redis, and the same period never runs twice at once.
func InvoiceRunTaskID(p Period) string { return "invoice:run:" + p.Key() }

// InvoiceAccountTaskID is the asynq TaskID of one account's invoice task in
// a period. A retry of a failed account is a new attempt with its own id,
// since the failed attempt's task stays archived under the old one.
func InvoiceAccountTaskID(accountID uuid.UUID, p Period, attempt int) string {
	id := "invoice:" + accountID.String() + ":" + p.Key()
	if attempt > 1 {
		id += fmt.Sprintf(":%d", attempt)
	}
	return id
}

// InvoiceRunPayload is the payload of an invoice:run task.
type InvoiceRunPayload struct {
	workers.Meta
	RunID uuid.UUID `json:"run_id"`
}

// InvoiceAccountPayload is the payload of an invoice:account task.
type InvoiceAccountPayload struct {
	workers.Meta
	RunID     uuid.UUID `json:"run_id"`
	AccountID uuid.UUID `json:"account_id"`
	Attempt   int       `json:"attempt"`
}

// Retry budgets and time limits of the invoicing tasks. A run task walks
// every corporate account, so it gets an hour.
const (
	invoiceRunMaxRetry     = 10
	invoiceRunTimeout      = time.Hour
	invoiceAccountMaxRetry = 5
	invoiceAccountTimeout  = 2 * time.Minute
	invoiceRunRetention    = 24 * time.Hour
)

// NewInvoiceRunTask builds the task that discovers and hands out the
// accounts of run, with its TaskID, queue, retry budget and time limit.
func NewInvoiceRunTask(m workers.Meta, run store.InvoiceRun, queue string) (*asynq.Task, error) {
	m.Version = workers.PayloadVersion
	t, err := newTask(workers.TypeInvoiceRun, InvoiceRunPayload{Meta: m, RunID: run.ID})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(t.Type(), t.Payload(),
		asynq.TaskID(InvoiceRunTaskID(periodOf(run))), asynq.Queue(queue),
		asynq.MaxRetry(invoiceRunMaxRetry), asynq.Timeout(invoiceRunTimeout), asynq.Retention(invoiceRunRetention)), nil
}

// NewInvoiceAccountTask builds the task that bills one account in run.
func NewInvoiceAccountTask(m workers.Meta, run store.InvoiceRun, accountID uuid.UUID, attempt int, queue string) (*asynq.Task, error) {
	m.Version = workers.PayloadVersion
	t, err := newTask(workers.TypeInvoiceAccount, InvoiceAccountPayload{Meta: m, RunID: run.ID, AccountID: accountID, Attempt: attempt})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(t.Type(), t.Payload(),
		asynq.TaskID(InvoiceAccountTaskID(accountID, periodOf(run), attempt)), asynq.Queue(queue),
		asynq.MaxRetry(invoiceAccountMaxRetry), asynq.Timeout(invoiceAccountTimeout)), nil
}

// InvoiceCreatedData is the data of invoice.created: enough for the
// notifications service to address and attach the invoice
// (RenderInvoicePDF) without another query.
type InvoiceCreatedData struct {
	InvoiceID    uuid.UUID `json:"invoice_id"`
	Number       string    `json:"number"`
	RunID        uuid.UUID `json:"run_id"`
	AccountID    uuid.UUID `json:"account_id"`
	AccountName  string    `json:"account_name"`
	BillingEmail string    `json:"billing_email"`
	PeriodStart  string    `json:"period_start"`
	PeriodEnd    string    `json:"period_end"`
	Currency     string    `json:"currency"`
	TotalMinor   int64     `json:"total_minor"`
	DueOn        string    `json:"due_on"`
}

// InvoiceRunData is the data of invoicing.run_started,
// invoicing.retry_requested and invoicing.run_completed. PeriodEnd is the last day billed. Completion
// counts how often the run completed: a "retry failed" reopens a run,
// which then completes again.
type InvoiceRunData struct {
	RunID       uuid.UUID `json:"run_id"`
	PeriodStart string    `json:"period_start"`
	PeriodEnd   string    `json:"period_end"`
	Trigger     string    `json:"trigger"`
	Accounts    int       `json:"accounts"`
	Done        int       `json:"done"`
	Failed      int       `json:"failed"`
	Invoices    int       `json:"invoices"`
	Completion  int       `json:"completion,omitempty"`
}

// Config holds the dependencies and settings of batch invoicing.
type Config struct {
	// DB is the PostgreSQL pool (required).
	DB *sqlx.DB
	// Client enqueues the run and account tasks (required).
	Client *asynq.Client
	// Inspector, where the account tasks run, deletes the archived tasks of
	// an account's failed attempts once a retry billed it, so the archive
	// holds only what still needs a person. Nil leaves them archived.
	Inspector *asynq.Inspector
	// Location is the time zone whose calendar days make up periods and
	// issue dates (default UTC). Schedulers must use the same.
	Location *time.Location
	// Tax is the tax table (default DefaultTaxRates).
	Tax *TaxTable
	// Queue is the asynq queue of invoicing tasks (default "low"): a batch
	// of thousands must not delay the order saga.
	Queue string
	// ChunkSize is how many accounts a run discovers and enqueues per
	// transaction (default 1000).
	ChunkSize int
	// BatchSize is how many pending accounts of a run one account task bills
	// in its transaction (default 100; 1 bills each account alone).
	BatchSize int
	// PaymentTermDays is how many days after issue an invoice is due (default 14).
	PaymentTermDays int
	// DisablePrepared runs the account tasks' small statements (reads,
	// locks, numbering) unnamed instead of as named prepared statements
	// (store.Statements), for a pooler that cannot carry them across
	// transactions. The billing statement always runs unnamed.
	DisablePrepared bool
	// Now is the clock (default time.Now); tests control it.
	Now    func() time.Time
	Logger *slog.Logger
	// Observer is told after a transaction recorded events.
	Observer store.TxObserver
}

// Invoicer runs batch invoicing: it starts runs, bills accounts in asynq
// tasks, retries failed accounts and tracks each run to its completion.
type Invoicer struct {
	cfg   Config
	db    *sqlx.DB
	log   *slog.Logger
	tax   TaxTable
	rates []store.TaxRate
	stmts *store.Statements
}

// New validates cfg and builds an Invoicer.
func New(cfg Config) (*Invoicer, error) {
	if cfg.DB == nil {
		return nil, errors.New("invoicing: DB is required")
	}
	if cfg.Client == nil {
		return nil, errors.New("invoicing: Client is required")
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	var tax TaxTable
	if cfg.Tax != nil {
		tax = *cfg.Tax
	} else {
		t, err := ParseTaxTable(DefaultTaxRates)
		if err != nil {
			return nil, fmt.Errorf("invoicing: %w", err)
		}
		tax = t
	}
	cfg.Queue = cmp.Or(cfg.Queue, workers.QueueLow)
	cfg.ChunkSize = cmp.Or(cfg.ChunkSize, 1000)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 100)
	cfg.PaymentTermDays = cmp.Or(cfg.PaymentTermDays, 14)
	if cfg.ChunkSize < 1 || cfg.BatchSize < 1 || cfg.PaymentTermDays < 0 {
		return nil, errors.New("invoicing: ChunkSize and BatchSize must be positive and PaymentTermDays not negative")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &Invoicer{
		cfg: cfg, db: cfg.DB, log: cfg.Logger, tax: tax, rates: tax.billingRates(),
		stmts: store.NewStatements(cfg.DB, !cfg.DisablePrepared),
	}, nil
}

// Location returns the time zone of the invoicing calendar.
func (iv *Invoicer) Location() *time.Location { return iv.cfg.Location }

// Register adds the invoicing task handlers to mux.
func (iv *Invoicer) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(workers.TypeInvoiceRun, iv.HandleRun)
	mux.HandleFunc(workers.TypeInvoiceAccount, iv.HandleAccount)
}

// RegisterInvoiceTasks adds the invoicing task handlers of iv to mux.
func RegisterInvoiceTasks(mux *asynq.ServeMux, iv *Invoicer) { iv.Register(mux) }

// ErrPeriodOpen means a run was asked for a period that has not ended yet.
var ErrPeriodOpen = errors.New("period has not ended")

// RunRequest asks for an invoice run.
type RunRequest struct {
	Period    Period
	Trigger   string
	RequestID string
}

// CreateRun records the run of a period in tx, or finds the one that
// exists, judging the period's end in loc at now. It reports whether it
// created the run and returns the events to record with it
// (invoicing.run_started, only when created). It does not enqueue: the
// invoicing group does, on invoicing.run_started, so a caller that must not
// write to Redis (the API) can start a run. A period that overlaps another
// run's is store.ErrConflict; one that has not ended is ErrPeriodOpen.
func CreateRun(ctx context.Context, tx sqlx.ExtContext, req RunRequest, loc *time.Location, now time.Time) (store.InvoiceRun, bool, []store.Event, error) {
	p := req.Period
	from, to := p.Bounds(loc)
	if to.After(now) {
		return store.InvoiceRun{}, false, nil, fmt.Errorf("start run for %s: it ends %s: %w", p, to.Format(time.RFC3339), ErrPeriodOpen)
	}
	trigger := cmp.Or(req.Trigger, TriggerManual)
	if trigger != TriggerManual && trigger != TriggerSchedule {
		return store.InvoiceRun{}, false, nil, fmt.Errorf("start run: trigger %q is not manual or schedule", trigger)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.InvoiceRun{}, false, nil, fmt.Errorf("run id: %w", err)
	}
	run, created, err := store.CreateInvoiceRun(ctx, tx, store.InvoiceRun{
		ID: id, PeriodStart: p.Start, PeriodEnd: p.End, Timezone: loc.String(),
		StartsAt: from, EndsAt: to, Trigger: trigger,
	})
	if err != nil || !created {
		return run, false, nil, err
	}
	ev, err := newEvent(workers.Meta{RequestID: req.RequestID}, workers.EventInvoiceRunStarted, run.ID.String(), nil, runData(run, store.RunProgress{}))
	if err != nil {
		return store.InvoiceRun{}, false, nil, err
	}
	return run, true, []store.Event{ev}, nil
}

// ResetFailedAccounts moves every failed account of a run back to pending
// in tx, reopening the run, and returns how many it moved, the run as it
// now stands and the events to record (invoicing.retry_requested, when
// any moved). The invoicing group enqueues the accounts on that event.
func ResetFailedAccounts(ctx context.Context, tx sqlx.ExtContext, runID uuid.UUID) (int, store.InvoiceRun, []store.Event, error) {
	// The run's lock keeps a completion check from judging the run while
	// its failed accounts turn pending.
	if _, err := store.LockInvoiceRun(ctx, tx, runID); err != nil {
		return 0, store.InvoiceRun{}, nil, err
	}
	n, run, err := store.ResetFailedRunAccounts(ctx, tx, runID)
	if err != nil || n == 0 {
		return n, run, nil, err
	}
	progress, err := store.InvoiceRunProgress(ctx, tx, runID)
	if err != nil {
		return 0, store.InvoiceRun{}, nil, err
	}
	ev, err := newEvent(workers.Meta{}, workers.EventInvoiceRetryRequested, run.ID.String(), nil, runData(run, progress))
	if err != nil {
		return 0, store.InvoiceRun{}, nil, err
	}
	return n, run, []store.Event{ev}, nil
}

// StartRun creates the run of a period, or finds the one that exists (see
// CreateRun), and hands it to the workers at once. Asking for the same
// period again is harmless: it finds the run and, unless the run completed,
// enqueues its task again under the same TaskID, which asynq refuses while
// the first is kept.
func (iv *Invoicer) StartRun(ctx context.Context, req RunRequest) (store.InvoiceRun, bool, error) {
	var (
		run     store.InvoiceRun
		created bool
	)
	err := iv.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		var (
			events []store.Event
			err    error
		)
		run, created, events, err = CreateRun(ctx, tx, req, iv.cfg.Location, iv.cfg.Now())
		if err != nil {
			return 0, err
		}
		return len(events), store.InsertEvents(ctx, tx, events...)
	})
	if err != nil {
		return store.InvoiceRun{}, false, fmt.Errorf("start run for %s: %w", req.Period, err)
	}
	if run.Status == store.RunCompleted {
		return run, created, nil
	}
	if err := iv.enqueueRun(ctx, workers.Meta{Version: workers.PayloadVersion, RequestID: req.RequestID}, run); err != nil {
		return run, created, fmt.Errorf("start run for %s: %w", req.Period, err)
	}
	if created {
		iv.log.Info("invoice run started", "run_id", run.ID, "period", req.Period.String(), "trigger", run.Trigger)
	}
	return run, created, nil
}

// RetryFailed moves every failed account of a run back to pending and
// enqueues it again, reopening the run; the run completes (and says so in
// another invoicing.run_completed) when they are done. It returns how many
// accounts it moved. Calling it again after a crash hands over whatever is
// still pending, so nothing is left behind.
func (iv *Invoicer) RetryFailed(ctx context.Context, runID uuid.UUID) (int, error) {
	var (
		n   int
		run store.InvoiceRun
	)
	err := iv.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		var (
			events []store.Event
			err    error
		)
		n, run, events, err = ResetFailedAccounts(ctx, tx, runID)
		if err != nil {
			return 0, err
		}
		return len(events), store.InsertEvents(ctx, tx, events...)
	})
	if err != nil {
		return 0, fmt.Errorf("retry failed accounts of run %s: %w", runID, err)
	}
	if err := iv.enqueuePending(ctx, workers.Meta{Version: workers.PayloadVersion}, run); err != nil {
		return n, fmt.Errorf("retry failed accounts of run %s: %w", runID, err)
	}
	iv.log.Info("invoice run: failed accounts retried", "run_id", runID, "accounts", n)
	return n, nil
}

// InvoicingGroup is the consumer group that hands runs to the workers when
// they were started or retried without an enqueue (by the API).
const InvoicingGroup = "invoicing"

// Group returns the invoicing consumer group: on invoicing.run_started it
// enqueues the run's task, on invoicing.retry_requested the run's pending
// accounts. Both are idempotent by TaskID, so the events of runs the
// scheduler already enqueued change nothing.
func (iv *Invoicer) Group() workers.Group {
	return workers.Group{
		Name:     InvoicingGroup,
		Patterns: []string{workers.EventInvoiceRunStarted, workers.EventInvoiceRetryRequested},
		Handle:   iv.HandleEvent,
	}
}

// Subscription returns the invoicing group as a stream subscription, to
// add to the stream.Groups of every process that runs the workers
// ("bazaar work", "bazaar dev"): without it, runs started through the API
// wait for a scheduler's enqueue that never comes.
func (iv *Invoicer) Subscription() stream.Subscription {
	g := iv.Group()
	return stream.Subscription{
		Group:    g.Name,
		Patterns: g.Patterns,
		Handler: func(ctx context.Context, msg stream.Message) error {
			return g.Handle(ctx, msg.Envelope)
		},
		Concurrency:   2,
		MaxDeliveries: 10,
	}
}

// HandleEvent is the invoicing group's handler.
func (iv *Invoicer) HandleEvent(ctx context.Context, env stream.Envelope) error {
	var d InvoiceRunData
	if err := json.Unmarshal(env.Data, &d); err != nil || d.RunID == uuid.Nil {
		// No retry can fix the event; drop it loudly.
		iv.log.Error("invoicing event without a run id", "event_id", env.ID, "event_type", env.Type)
		return nil
	}
	run, err := store.GetInvoiceRun(ctx, iv.db, d.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if run.Status == store.RunCompleted {
		return nil
	}
	m := workers.MetaOf(env)
	switch env.Type {
	case workers.EventInvoiceRunStarted:
		return iv.enqueueRun(ctx, m, run)
	case workers.EventInvoiceRetryRequested:
		return iv.enqueuePending(ctx, m, run)
	}
	return nil
}

func (iv *Invoicer) enqueueRun(ctx context.Context, m workers.Meta, run store.InvoiceRun) error {
	t, err := NewInvoiceRunTask(m, run, iv.cfg.Queue)
	if err != nil {
		return err
	}
	return iv.enqueue(ctx, t)
}

// HandleRun is the invoice:run task. It walks the corporate accounts in id
// order, a chunk per transaction: each chunk's accounts with something to
// bill are recorded as pending and the run's cursor moves past them in one
// commit, then their tasks are enqueued. Started again after a crash, it
// first re-enqueues the pending accounts before its cursor (their TaskIDs
// make that harmless) and goes on from the cursor.
func (iv *Invoicer) HandleRun(ctx context.Context, t *asynq.Task) error {
	p, err := decode[InvoiceRunPayload](t)
	if err != nil {
		return err
	}
	run, err := store.GetInvoiceRun(ctx, iv.db, p.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("invoice run %s: %w", p.RunID, errors.Join(err, asynq.SkipRetry))
	}
	if err != nil {
		return err
	}
	if run.Status == store.RunCompleted {
		return nil
	}
	if run.Cursor != nil {
		if err := iv.enqueuePending(ctx, p.Meta, run); err != nil {
			return err
		}
	}
	log := workers.Logger(ctx, iv.log).With("run_id", run.ID, "period", periodOf(run).String())
	discovered := 0
	for run.Status == store.RunDiscovering {
		var ids []uuid.UUID
		err := store.WithTx(ctx, iv.db, func(tx *sqlx.Tx) error {
			ids = nil
			locked, err := store.LockInvoiceRun(ctx, tx, run.ID)
			if err != nil {
				return err
			}
			run = locked
			if locked.Status != store.RunDiscovering {
				return nil
			}
			late, err := iv.lateWindow(ctx, tx, locked)
			if err != nil {
				return err
			}
			after := uuid.Nil
			if locked.Cursor != nil {
				after = *locked.Cursor
			}
			d, err := store.DiscoverAccounts(ctx, tx, after,
				store.TimeRange{From: locked.StartsAt, To: locked.EndsAt}, late, iv.cfg.ChunkSize)
			if err != nil {
				return err
			}
			ids = d.Billable
			run, err = store.AddRunAccounts(ctx, tx, locked.ID, ids, d.Last, d.Done)
			return err
		})
		if err != nil {
			return fmt.Errorf("discover accounts of run %s: %w", run.ID, err)
		}
		for _, id := range ids {
			if err := iv.enqueueAccount(ctx, p.Meta, run, id, 1); err != nil {
				return err
			}
		}
		discovered += len(ids)
	}
	log.Info("invoice run: accounts handed out", "accounts", discovered)
	// With nothing to bill, or every account already finished, no account
	// task is left to notice that the run is complete.
	return iv.tryComplete(ctx, p.Meta, run.ID)
}

// HandleAccount is the invoice:account task: it bills one account for the
// run's period. Bad data (BillingError) marks the account failed at once
// and archives the task; other errors are retried, and the last retry
// marks the account failed too, so a run always finishes. Whatever the
// outcome, it then checks whether the run is complete; a task delivered
// again after a crash between the two finds its account finished and only
// checks.
func (iv *Invoicer) HandleAccount(ctx context.Context, t *asynq.Task) error {
	p, err := decode[InvoiceAccountPayload](t)
	if err != nil {
		return err
	}
	// Most tasks find their account billed by another task's batch; one
	// plain read tells them so without a row lock, which would cost a
	// write and a commit, and whether the run has pending accounts.
	st, err := store.GetRunAccountState(ctx, iv.stmts.DB(), p.RunID, p.AccountID)
	if err == nil && st.Status != store.RunAccountPending {
		iv.dropFailedAttempts(ctx, p)
		if st.Claimable && iv.cfg.BatchSize > 1 {
			// Rather than leave them to tasks still queued behind this
			// one, it bills a batch of them. Helping is best effort: what
			// it leaves pending, their own tasks bill.
			if herr := iv.bill(ctx, p); herr != nil {
				workers.Logger(ctx, iv.log).Warn("invoice batch not billed", "run_id", p.RunID, "error", herr.Error())
			}
		} else if st.Pending {
			// The last of those to finish completes the run.
			return nil
		}
		return iv.tryComplete(ctx, p.Meta, p.RunID)
	}
	if err == nil {
		err = iv.bill(ctx, p)
	}
	if err == nil {
		iv.dropFailedAttempts(ctx, p)
		return iv.tryComplete(ctx, p.Meta, p.RunID)
	}
	log := workers.Logger(ctx, iv.log).With("run_id", p.RunID, "account_id", p.AccountID)
	permanent := isBillingError(err) || errors.Is(err, store.ErrNotFound)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if !permanent && retried < maxRetry {
		// The note is best effort: the task is retried either way.
		if nerr := store.NoteRunAccountError(ctx, iv.db, p.RunID, p.AccountID, err.Error()); nerr != nil {
			log.Warn("note invoice error", "error", nerr)
		}
		return err
	}
	if ferr := iv.fail(ctx, p, err); ferr != nil {
		// Not recorded: let asynq try again, which will fail and record.
		return errors.Join(err, ferr)
	}
	log.Warn("account not invoiced", "error", err.Error())
	return fmt.Errorf("invoice account %s: %w", p.AccountID, errors.Join(err, asynq.SkipRetry))
}

// bill writes the invoices of the task's account, one per currency, with
// their invoice.created events and the account's outcome, in one
// transaction, together with up to BatchSize-1 other pending accounts of
// the run (see billBatch). When that batch fails for any reason but the
// account's own data, the account is billed alone, and so is each of the
// other accounts of the failed batch, so one account the database refuses
// fails alone instead of taking its batch with it.
func (iv *Invoicer) bill(ctx context.Context, p InvoiceAccountPayload) error {
	if iv.cfg.BatchSize <= 1 {
		_, err := iv.billBatch(ctx, p, 1)
		return err
	}
	others, err := iv.billBatch(ctx, p, iv.cfg.BatchSize)
	if err == nil || isBillingError(err) || errors.Is(err, store.ErrNotFound) || ctx.Err() != nil {
		return err
	}
	log := workers.Logger(ctx, iv.log).With("run_id", p.RunID)
	log.Warn("invoice batch failed, billing its accounts alone", "account_id", p.AccountID, "accounts", len(others)+1, "error", err.Error())
	for _, id := range others {
		q := p
		q.AccountID = id
		if _, oerr := iv.billBatch(ctx, q, 1); oerr != nil {
			// The account stays pending for its own task, which bills it
			// alone (the noted error keeps it out of other batches) and
			// records the outcome.
			if nerr := store.NoteRunAccountError(ctx, iv.db, p.RunID, id, oerr.Error()); nerr != nil {
				log.Warn("note invoice error", "account_id", id, "error", nerr)
			}
		}
	}
	_, err = iv.billBatch(ctx, p, 1)
	return err
}

// billBatch bills the task's account and up to size-1 other pending
// accounts of its run in one transaction of four statements whatever the
// batch's size: the account's row lock (waiting for another copy of the
// task), the others' row locks (store.ClaimRunAccounts, never waiting),
// the billing statement (store.BillAccounts: their orders and returns,
// every invoice's totals and tax, the invoices with their lines and the
// accounts' outcome, all computed in PostgreSQL) and, last, the numbers
// with the events, since numbering takes the lock every invoicing
// transaction shares. The small statements are prepared unless
// Config.DisablePrepared; the billing statement never is. A task whose
// account is no longer pending bills up to size other pending accounts
// instead (size 1: nothing). Another account whose data cannot be billed
// (BillingError) is left out and left pending with its error noted, so its
// own task bills it alone and fails it; the task's own account's
// BillingError is returned after the others commit. On failure it returns
// the other accounts it had claimed, which the rollback left pending.
func (iv *Invoicer) billBatch(ctx context.Context, p InvoiceAccountPayload, size int) ([]uuid.UUID, error) {
	var (
		created []store.Invoice
		others  []uuid.UUID
		ownErr  error
	)
	err := iv.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		created, others, ownErr = nil, nil, nil
		q := iv.stmts.Tx(tx)
		bc, err := store.LockBillingContext(ctx, q, p.RunID, p.AccountID)
		if err != nil {
			return 0, err
		}
		run := bc.Run
		var bcs []store.BillingContext
		switch {
		case bc.Status == store.RunAccountPending:
			bcs = append(bcs, bc)
		case size == 1:
			return 0, nil
		}
		if size > len(bcs) {
			more, err := store.ClaimRunAccounts(ctx, q, run, []uuid.UUID{p.AccountID}, size-len(bcs))
			if err != nil {
				return 0, err
			}
			for _, m := range more {
				others = append(others, m.Account.ID)
			}
			bcs = append(bcs, more...)
		}
		if len(bcs) == 0 {
			return 0, nil
		}
		issuedAt := iv.cfg.Now().UTC()
		issued := issuedAt.In(iv.cfg.Location)
		dueOn := time.Date(issued.Year(), issued.Month(), issued.Day()+iv.cfg.PaymentTermDays, 0, 0, 0, 0, time.UTC)
		// The billing statement runs unnamed: planned for each batch's
		// arrays, it costs less in PostgreSQL than the generic plan a
		// prepared statement settles on (docs/benchmarks.md), and its
		// planning is paid once per batch, not per account.
		res, err := store.BillAccounts(ctx, tx, run, bcs, iv.rates, issuedAt, dueOn)
		if err != nil {
			return 0, err
		}
		for _, pr := range res.Problems {
			perr := iv.tax.problemError(pr)
			if pr.AccountID == p.AccountID {
				ownErr = perr
				continue
			}
			if err := store.NoteRunAccountError(ctx, q, p.RunID, pr.AccountID, perr.Error()); err != nil {
				return 0, err
			}
		}
		if want := len(bcs) - len(res.Problems); res.Finished != want {
			return 0, fmt.Errorf("finish run accounts: %d of %d were pending: %w", res.Finished, want, store.ErrConflict)
		}
		invs := res.Invoices
		if len(invs) == 0 {
			return 0, nil
		}
		// Numbers follow the batch's order: the task's account first, then
		// the others by id, each account's invoices by currency.
		order := make(map[uuid.UUID]int, len(bcs))
		for i, b := range bcs {
			order[b.Account.ID] = i
		}
		slices.SortFunc(invs, func(a, b store.Invoice) int {
			return cmp.Or(cmp.Compare(order[a.AccountID], order[b.AccountID]), strings.Compare(a.Currency, b.Currency))
		})
		// The events get their invoice's number from the numbering statement.
		ids := make([]uuid.UUID, len(invs))
		events := make([]store.Event, len(invs))
		for i := range invs {
			ids[i] = invs[i].ID
			if events[i], err = newEvent(p.Meta, workers.EventInvoiceCreated, invs[i].ID.String(), nil, invoiceData(invs[i])); err != nil {
				return 0, err
			}
		}
		numbers, err := store.NumberInvoices(ctx, q, issued.Year(), ids, events)
		if err != nil {
			return 0, err
		}
		for i := range invs {
			invs[i].Number = numbers[invs[i].ID]
		}
		created = invs
		return len(events), nil
	})
	if err != nil {
		return others, err // HandleAccount names the account
	}
	for _, inv := range created {
		workers.Logger(ctx, iv.log).Info("invoice created", "invoice_id", inv.ID, "number", inv.Number,
			"account_id", inv.AccountID, "currency", inv.Currency, "total_minor", inv.TotalMinor)
	}
	return nil, ownErr
}

// dropFailedAttempts deletes the archived tasks of the account's earlier
// attempts once an attempt billed it: they failed, the account no longer
// has. Best effort: a task left behind only shows in the archive.
func (iv *Invoicer) dropFailedAttempts(ctx context.Context, p InvoiceAccountPayload) {
	if iv.cfg.Inspector == nil || p.Attempt < 2 {
		return
	}
	run, err := store.GetInvoiceRun(ctx, iv.db, p.RunID)
	if err != nil {
		workers.Logger(ctx, iv.log).Warn("invoice account: archived attempts not deleted", "run_id", p.RunID, "error", err)
		return
	}
	queue, _ := asynq.GetQueueName(ctx)
	for attempt := 1; attempt < p.Attempt; attempt++ {
		id := InvoiceAccountTaskID(p.AccountID, periodOf(run), attempt)
		err := iv.cfg.Inspector.DeleteTask(cmp.Or(queue, iv.cfg.Queue), id)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			workers.Logger(ctx, iv.log).Warn("invoice account: archived attempt not deleted", "task_id", id, "error", err)
		}
	}
}

// fail records an account's failure, then checks whether the run is
// complete.
func (iv *Invoicer) fail(ctx context.Context, p InvoiceAccountPayload, cause error) error {
	// The task's context may be what failed (its deadline); the outcome
	// must still be written.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := store.FinishRunAccount(ctx, iv.db, p.RunID, p.AccountID, store.RunAccountFailed, cause.Error(), 0); err != nil {
		return err
	}
	return iv.tryComplete(ctx, p.Meta, p.RunID)
}

// tryComplete completes the run if its discovery finished and no account is
// pending, recording invoicing.run_completed in the same transaction. It
// looks without a lock first, so only the last accounts to finish take the
// run's lock; under the lock it looks again, in a statement that sees every
// commit made before the lock was granted. The last account to commit
// always gets here after its commit, so the run completes exactly once per
// time its accounts run out.
func (iv *Invoicer) tryComplete(ctx context.Context, m workers.Meta, runID uuid.UUID) error {
	pending, err := store.HasPendingAccounts(ctx, iv.stmts.DB(), runID)
	if err != nil || pending {
		return err
	}
	var done store.InvoiceRun
	var progress store.RunProgress
	err = iv.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		run, err := store.LockInvoiceRun(ctx, tx, runID)
		if err != nil {
			return 0, err
		}
		if run.Status != store.RunRunning {
			return 0, nil
		}
		if pending, err := store.HasPendingAccounts(ctx, tx, runID); err != nil || pending {
			return 0, err
		}
		if done, err = store.CompleteInvoiceRun(ctx, tx, runID); err != nil {
			return 0, err
		}
		if progress, err = store.InvoiceRunProgress(ctx, tx, runID); err != nil {
			return 0, err
		}
		ev, err := newEvent(m, workers.EventInvoiceRunCompleted, runID.String(), nil, runData(done, progress))
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("complete run %s: %w", runID, err)
	}
	if done.ID != uuid.Nil {
		iv.log.Info("invoice run completed", "run_id", done.ID, "period", periodOf(done).String(),
			"accounts", progress.Accounts, "done", progress.Done, "failed", progress.Failed, "invoices", progress.Invoices)
	}
	return nil
}

// lateWindow returns the previous period, whose unbilled orders and
// uncredited returns this run also bills: those that committed after the
// previous run had already billed their account (or found nothing to bill
// for it). It is empty when there is no previous run or its discovery has
// not finished. Discovery uses it whole; billing narrows it per account
// (store.LockBillingContext), leaving out accounts the previous run still
// has pending or failed, as that run bills them itself.
func (iv *Invoicer) lateWindow(ctx context.Context, q sqlx.QueryerContext, run store.InvoiceRun) (store.TimeRange, error) {
	prev, err := store.InvoiceRunEndingOn(ctx, q, run.PeriodStart)
	if errors.Is(err, store.ErrNotFound) {
		return store.TimeRange{}, nil
	}
	if err != nil {
		return store.TimeRange{}, err
	}
	if prev.DiscoveredAt == nil {
		return store.TimeRange{}, nil
	}
	return store.TimeRange{From: prev.StartsAt, To: prev.EndsAt}, nil
}

// enqueuePending hands every pending account of a run to the workers again.
func (iv *Invoicer) enqueuePending(ctx context.Context, m workers.Meta, run store.InvoiceRun) error {
	after := uuid.Nil
	for {
		page, err := store.ListRunAccounts(ctx, iv.db, run.ID, store.RunAccountPending, after, iv.cfg.ChunkSize)
		if err != nil {
			return err
		}
		for _, ra := range page {
			if err := iv.enqueueAccount(ctx, m, run, ra.AccountID, ra.Attempts); err != nil {
				return err
			}
		}
		if len(page) < iv.cfg.ChunkSize {
			return nil
		}
		after = page[len(page)-1].AccountID
	}
}

func (iv *Invoicer) enqueueAccount(ctx context.Context, m workers.Meta, run store.InvoiceRun, accountID uuid.UUID, attempt int) error {
	t, err := NewInvoiceAccountTask(m, run, accountID, attempt, iv.cfg.Queue)
	if err != nil {
		return err
	}
	return iv.enqueue(ctx, t)
}

// enqueue adds a task built with its TaskID; a task with that id already
// in Redis counts as enqueued.
func (iv *Invoicer) enqueue(ctx context.Context, t *asynq.Task) error {
	_, err := iv.cfg.Client.EnqueueContext(ctx, t)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", t.Type(), err)
	}
	return nil
}

// inTx runs fn in a transaction and tells the observer when it committed
// events.
func (iv *Invoicer) inTx(ctx context.Context, fn func(tx *sqlx.Tx) (events int, err error)) error {
	var n int
	err := store.WithTx(ctx, iv.db, func(tx *sqlx.Tx) error {
		var err error
		n, err = fn(tx)
		return err
	})
	if err == nil && n > 0 && iv.cfg.Observer != nil {
		iv.cfg.Observer.EventsCommitted()
	}
	return err
}

func runData(r store.InvoiceRun, pr store.RunProgress) InvoiceRunData {
	p := periodOf(r)
	return InvoiceRunData{
		RunID: r.ID, PeriodStart: p.Key(), PeriodEnd: p.LastDay().Format(store.DateLayout), Trigger: r.Trigger,
		Accounts: pr.Accounts, Done: pr.Done, Failed: pr.Failed, Invoices: pr.Invoices, Completion: r.Completions,
	}
}

func invoiceData(inv store.Invoice) InvoiceCreatedData {
	return InvoiceCreatedData{
		InvoiceID: inv.ID, Number: inv.Number, RunID: inv.RunID, AccountID: inv.AccountID,
		AccountName: inv.AccountName, BillingEmail: inv.BillingEmail,
		PeriodStart: inv.PeriodStart.Format(store.DateLayout),
		PeriodEnd:   inv.PeriodEnd.AddDate(0, 0, -1).Format(store.DateLayout),
		Currency:    inv.Currency, TotalMinor: inv.TotalMinor, DueOn: inv.DueOn.Format(store.DateLayout),
	}
}
