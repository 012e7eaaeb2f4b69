package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The pools' own goroutines end when storetest closes them in
		// t.Cleanup, after goleak has looked.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// clock is a clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type bundle struct {
	db       *sqlx.DB
	redisOpt *redis.Options
	clock    *clock
	loc      *time.Location
	accounts []uuid.UUID
}

// setup makes a database with three corporate accounts that owe for 15-31
// October 2026 (Europe/Berlin), two in EUR and one in EUR and USD, and
// starts an asynq server running the invoicing tasks.
func setup(t *testing.T) *bundle {
	t.Helper()
	db, _ := storetest.NewDB(t)
	loc, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	b := &bundle{db: db, redisOpt: redistest.DB(t), clock: &clock{}, loc: loc}
	ctx := context.Background()
	seller, product := uuid.New(), uuid.New()
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := db.ExecContext(ctx, q, args...)
		require.NoError(t, err)
	}
	exec(`INSERT INTO sellers (id, name, email) VALUES ($1, 'Seller', 's@bazaar.test')`, seller)
	exec(`INSERT INTO products (id, seller_id, sku, name, price_minor, currency) VALUES ($1, $2, 'P', 'P', 100, 'EUR')`, product, seller)
	for i := range 3 {
		acct, user := uuid.New(), uuid.New()
		b.accounts = append(b.accounts, acct)
		exec(`INSERT INTO corporate_accounts (id, name, billing_email) VALUES ($1, $2, 'billing@corp.test')`, acct, fmt.Sprintf("Corp %d", i))
		exec(`INSERT INTO users (id, email, corporate_account_id) VALUES ($1, $2, $3)`, user, fmt.Sprintf("u%d@corp.test", i), acct)
		currencies := []string{"EUR"}
		if i == 2 {
			currencies = append(currencies, "USD")
		}
		for _, cur := range currencies {
			order := uuid.New()
			exec(`INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, confirmed_at)
				VALUES ($1, $2, $3, 'confirmed', $4, 1000, 1000, $5)`, order, seller, user, cur, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
			exec(`INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
				VALUES ($1, $2, $3, 'P', 'P', 10, 100, 1000)`, uuid.New(), order, product)
		}
	}

	rdb := redis.NewClient(b.redisOpt)
	t.Cleanup(func() { _ = rdb.Close() })
	worker := b.invoicer(t)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{workers.QueueLow: 1},
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel, ShutdownTimeout: 2 * time.Second,
	})
	mux := asynq.NewServeMux()
	invoicing.RegisterInvoiceTasks(mux, worker)
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	return b
}

// invoicer builds an invoicer with an asynq client of its own, as each
// scheduler process has.
func (b *bundle) invoicer(t *testing.T) *invoicing.Invoicer {
	t.Helper()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: b.redisOpt.Addr, DB: b.redisOpt.DB, Password: b.redisOpt.Password})
	t.Cleanup(func() { _ = client.Close() })
	tax, err := invoicing.ParseTaxTable("EUR=1900,USD=0")
	require.NoError(t, err)
	iv, err := invoicing.New(invoicing.Config{
		DB: b.db, Client: client, Location: b.loc, Tax: &tax, ChunkSize: 2, Now: b.clock.Now, Logger: quiet(),
	})
	require.NoError(t, err)
	return iv
}

func (b *bundle) scheduler(t *testing.T, catchUp time.Duration) *Scheduler {
	t.Helper()
	s, err := New(Config{
		DB:           b.db,
		Schedules:    []Schedule{NewInvoicingSchedule(DefaultInvoicingSpec, b.invoicer(t))},
		Location:     b.loc,
		CatchUp:      catchUp,
		PollInterval: 10 * time.Millisecond,
		LeaseTTL:     400 * time.Millisecond,
		Now:          b.clock.Now,
		Logger:       quiet(),
	})
	require.NoError(t, err)
	return s
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (b *bundle) count(t *testing.T, query string) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.GetContext(context.Background(), &n, query))
	return n
}

// snapshot is everything a firing changes.
func (b *bundle) snapshot(t *testing.T) [5]int {
	return [5]int{
		b.count(t, `SELECT count(*) FROM schedule_firings`),
		b.count(t, `SELECT count(*) FROM invoice_runs`),
		b.count(t, `SELECT count(*) FROM invoices`),
		b.count(t, `SELECT count(*) FROM events`),
		b.count(t, `SELECT count(*) FROM invoice_run_accounts`),
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *bundle) waitRunCompleted(t *testing.T) store.InvoiceRun {
	t.Helper()
	var run store.InvoiceRun
	waitFor(t, 20*time.Second, "the run to complete", func() bool {
		runs, _, err := store.ListInvoiceRuns(context.Background(), b.db, store.Page{Limit: 10})
		require.NoError(t, err)
		if len(runs) == 1 && runs[0].Status == store.RunCompleted {
			run = runs[0]
			return true
		}
		return false
	})
	return run
}

func TestThreeSchedulersFireOncePerPeriodWhenOneIsKilled(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"claim", "fire"} {
		t.Run("killed at "+stage, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			b.clock.Set(time.Date(2026, 11, 1, 1, 59, 50, 0, b.loc))

			var (
				killed  atomic.Int32
				victim  atomic.Value
				scheds  []*Scheduler
				cancels []context.CancelFunc
			)
			for i := range 3 {
				s := b.scheduler(t, 7*24*time.Hour)
				sctx, cancel := context.WithCancel(ctx)
				s.hook = func(st string, _ Firing) {
					// The first scheduler to reach the stage dies there.
					if st == stage && killed.CompareAndSwap(0, 1) {
						victim.Store(s.Holder())
						cancel()
					}
				}
				scheds, cancels = append(scheds, s), append(cancels, cancel)
				require.NoError(t, s.Start(sctx), i)
			}
			t.Cleanup(func() {
				for i, s := range scheds {
					cancels[i]()
					require.NoError(t, s.Stop(context.Background()))
				}
			})
			waitFor(t, 5*time.Second, "a lease holder", func() bool {
				_, err := store.GetLease(ctx, b.db, "scheduler")
				return err == nil
			})
			require.Zero(t, b.count(t, `SELECT count(*) FROM schedule_firings`), "nothing is due before 02:00")

			b.clock.Set(time.Date(2026, 11, 1, 2, 0, 1, 0, b.loc))
			run := b.waitRunCompleted(t)
			require.EqualValues(t, 1, killed.Load())

			// Let the survivors tick on past a lease expiry: nothing more happens.
			before := b.snapshot(t)
			time.Sleep(600 * time.Millisecond)
			require.Equal(t, before, b.snapshot(t))

			require.Equal(t, "2026-10-15", run.PeriodStart.Format(store.DateLayout))
			require.Equal(t, "2026-11-01", run.PeriodEnd.Format(store.DateLayout))
			require.Equal(t, invoicing.TriggerSchedule, run.Trigger)
			progress, err := store.InvoiceRunProgress(ctx, b.db, run.ID)
			require.NoError(t, err)
			require.Equal(t, store.RunProgress{Accounts: 3, Done: 3, Invoices: 4}, progress)
			require.Equal(t, [5]int{1, 1, 4, 1 + 4 + 1, 3}, before, "one firing, one run, one invoice per account and currency")
			require.Equal(t, 3, b.count(t, `SELECT count(DISTINCT account_id) FROM invoices`))

			var firing store.Firing
			require.NoError(t, b.db.GetContext(ctx, &firing, `SELECT schedule, period, due_at, task_id, fired_by, fired_at, enqueued_at FROM schedule_firings`))
			require.Equal(t, "invoice:run:2026-10-15", firing.TaskID)
			require.NotNil(t, firing.EnqueuedAt)
			require.True(t, firing.DueAt.Equal(time.Date(2026, 11, 1, 2, 0, 0, 0, b.loc)))
			if stage == "fire" {
				// The dead scheduler recorded the firing; another finished it.
				require.Equal(t, victim.Load(), firing.FiredBy)
			} else {
				require.NotEqual(t, victim.Load(), firing.FiredBy)
			}

			insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: b.redisOpt.Addr, DB: b.redisOpt.DB})
			defer insp.Close()
			info, err := insp.GetTaskInfo(workers.QueueLow, "invoice:run:2026-10-15")
			require.NoError(t, err)
			require.Equal(t, asynq.TaskStateCompleted, info.State)
		})
	}
}

func TestStartedAfterAMissedFiringCatchesUpOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Down over 1 November 02:00; back on the 3rd.
	b.clock.Set(time.Date(2026, 11, 3, 10, 0, 0, 0, b.loc))

	runFor := func(catchUp time.Duration) {
		t.Helper()
		s := b.scheduler(t, catchUp)
		require.NoError(t, s.Start(ctx))
		waitFor(t, 5*time.Second, "a tick as lease holder", func() bool {
			var by string
			err := b.db.GetContext(ctx, &by, `SELECT checked_by FROM schedules WHERE name = 'invoicing'`)
			return err == nil && by == s.Holder()
		})
		require.NoError(t, s.Stop(ctx))
		require.NoError(t, s.Stop(ctx), "a second stop does nothing")
	}

	// A window of one day does not reach back to the 1st.
	runFor(24 * time.Hour)
	require.Equal(t, [5]int{0, 0, 0, 0, 0}, b.snapshot(t))

	runFor(7 * 24 * time.Hour)
	run := b.waitRunCompleted(t)
	require.Equal(t, "2026-10-15", run.PeriodStart.Format(store.DateLayout), "only the 1 November firing; 15 October is outside the window")
	after := b.snapshot(t)
	require.Equal(t, [5]int{1, 1, 4, 6, 3}, after)

	runFor(7 * 24 * time.Hour)
	runFor(7 * 24 * time.Hour)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, after, b.snapshot(t), "started twice more, nothing changes")

	list, err := store.ListSchedules(ctx, b.db)
	require.NoError(t, err)
	require.Len(t, list, 1)
	sc := list[0]
	require.Equal(t, []string{"invoicing", DefaultInvoicingSpec, "Europe/Berlin", "2026-10-15"},
		[]string{sc.Name, sc.Spec, sc.Timezone, *sc.LastPeriod})
	require.True(t, sc.NextRunAt.Equal(time.Date(2026, 11, 15, 2, 0, 0, 0, b.loc)), "next run %s", sc.NextRunAt)
	require.True(t, sc.LastDueAt.Equal(time.Date(2026, 11, 1, 2, 0, 0, 0, b.loc)))
}

func TestPreviousFiringAndInvoicingPeriods(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	c, err := parser.Parse(DefaultInvoicingSpec)
	require.NoError(t, err)
	job := InvoicingJob{Invoicer: mustInvoicer(t, berlin)}
	cases := []struct {
		due, prev      time.Time
		period, taskID string
	}{
		{time.Date(2026, 11, 1, 2, 0, 0, 0, berlin), time.Date(2026, 10, 15, 2, 0, 0, 0, berlin), "2026-10-15", "invoice:run:2026-10-15"},
		{time.Date(2026, 11, 15, 2, 0, 0, 0, berlin), time.Date(2026, 11, 1, 2, 0, 0, 0, berlin), "2026-11-01", "invoice:run:2026-11-01"},
		{time.Date(2027, 3, 1, 2, 0, 0, 0, berlin), time.Date(2027, 2, 15, 2, 0, 0, 0, berlin), "2027-02-15", "invoice:run:2027-02-15"},
		{time.Date(2027, 1, 1, 2, 0, 0, 0, berlin), time.Date(2026, 12, 15, 2, 0, 0, 0, berlin), "2026-12-15", "invoice:run:2026-12-15"},
	}
	for _, tc := range cases {
		prev := previous(c, tc.due, berlin)
		require.True(t, prev.Equal(tc.prev), "previous of %s is %s", tc.due, prev)
		period, taskID := job.Plan(Firing{Schedule: InvoicingSchedule, Due: tc.due, Previous: prev})
		require.Equal(t, tc.period, period)
		require.Equal(t, tc.taskID, taskID)
	}
	p := job.period(Firing{Due: time.Date(2027, 3, 1, 2, 0, 0, 0, berlin), Previous: time.Date(2027, 2, 15, 2, 0, 0, 0, berlin)})
	require.Equal(t, "2027-02-15..2027-02-28", p.String())

	monthly, err := parser.Parse("@monthly")
	require.NoError(t, err)
	require.True(t, previous(monthly, time.Date(2026, 3, 1, 0, 0, 0, 0, berlin), berlin).Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, berlin)))
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	db := &sqlx.DB{}
	job := InvoicingJob{}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no db", Config{}, "DB is required"},
		{"bad spec", Config{DB: db, Schedules: []Schedule{{Name: "x", Spec: "0 2 32 * *", Job: job}}}, `cron expression "0 2 32 * *"`},
		{"twice", Config{DB: db, Schedules: []Schedule{{Name: "x", Spec: "@daily", Job: job}, {Name: "x", Spec: "@daily", Job: job}}}, "listed twice"},
		{"no job", Config{DB: db, Schedules: []Schedule{{Name: "x", Spec: "@daily"}}}, "needs a Name and a Job"},
		{"short window", Config{DB: db, CatchUp: time.Second, PollInterval: time.Second, LeaseTTL: time.Minute}, "CatchUp must be longer than LeaseTTL + PollInterval"},
		{"window within lease and poll", Config{DB: db, CatchUp: 40 * time.Second, PollInterval: 10 * time.Second, LeaseTTL: 30 * time.Second}, "CatchUp must be longer than LeaseTTL + PollInterval"},
		{"short lease", Config{DB: db, PollInterval: time.Minute, LeaseTTL: time.Second}, "LeaseTTL longer"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	s, err := New(Config{DB: db})
	require.NoError(t, err)
	require.NoError(t, s.Stop(context.Background()), "stop without start")
}

func mustInvoicer(t *testing.T, loc *time.Location) *invoicing.Invoicer {
	t.Helper()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:0"})
	t.Cleanup(func() { _ = client.Close() })
	iv, err := invoicing.New(invoicing.Config{DB: &sqlx.DB{}, Client: client, Location: loc})
	require.NoError(t, err)
	return iv
}

func TestInvoicingRefusesSchedulesThatFireTwiceADay(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	saoPaulo, err := time.LoadLocation("America/Sao_Paulo")
	require.NoError(t, err)
	for _, tc := range []struct {
		spec string
		loc  *time.Location
		ok   bool
	}{
		{DefaultInvoicingSpec, berlin, true},
		{"0 2 * * *", berlin, true}, // across both DST changes
		{"30 2 * * *", berlin, true},
		{"0 0 * * *", saoPaulo, true},
		{"@daily", time.UTC, true},
		{"0 23,1 * * *", time.UTC, false},
		{"* * * * *", time.UTC, false},
		{"@hourly", berlin, false},
		{"0 */12 * * *", berlin, false},
	} {
		err := CheckInvoicingSpec(tc.spec, tc.loc)
		if tc.ok {
			require.NoError(t, err, "%s in %s", tc.spec, tc.loc)
			continue
		}
		require.ErrorIs(t, err, ErrSubDaySchedule, "%s in %s", tc.spec, tc.loc)
		_, err = New(Config{DB: &sqlx.DB{}, Location: tc.loc, Schedules: []Schedule{NewInvoicingSchedule(tc.spec, mustInvoicer(t, tc.loc))}})
		require.ErrorIs(t, err, ErrSubDaySchedule, "New refuses %s", tc.spec)
	}
}

// robfig/cron fires "0 2 * * *" twice on the night Berlin's clocks go back
// (02:00 CEST and 02:00 CET); the scheduler fires once, as cron does.
func TestDaylightSavingRepeatFiresOnce(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	s, err := New(Config{DB: &sqlx.DB{}, Location: berlin, Schedules: []Schedule{NewInvoicingSchedule("0 2 * * *", mustInvoicer(t, berlin))}})
	require.NoError(t, err)
	since := time.Date(2026, 10, 24, 12, 0, 0, 0, berlin)
	due := s.dueBetween(s.schedules[0], since, since.AddDate(0, 0, 2))
	require.Len(t, due, 2, "25 October (the repeat dropped) and 26 October: %v", due)
	require.Equal(t, 25, due[0].In(berlin).Day())
	require.Equal(t, 26, due[1].In(berlin).Day())
}
