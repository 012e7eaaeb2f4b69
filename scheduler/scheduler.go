// Package scheduler fires Bazaar's periodic jobs, such as bi-weekly
// invoicing, from cron expressions read in a configured time zone.
//
// Any number of schedulers may run. Three things make each (schedule,
// period) fire exactly once: a PostgreSQL lease, so one scheduler at a time
// does the work; a schedule_firings row keyed by (schedule, period), which
// only one insert can create; and a job that hands its work to asynq under
// a TaskID containing the period, so even a repeated hand-over enqueues
// once. The lease is an economy; the row is the guarantee.
//
// A scheduler does not trust its own memory of what fired. On every tick the
// lease holder lists the firings due within the catch-up window and creates
// the rows that are missing, so a scheduler that was down over a firing
// catches it up when it starts, and a firing recorded by a scheduler that
// died before handing its work over is finished by the next lease holder.
//
// asynq's own Scheduler is not used: it has no leader election, no
// catch-up and no way to put the period into the TaskID; the cron parser
// it builds on (robfig/cron) is.
package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/robfig/cron/v3"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Firing is one occurrence of a schedule: the time it was due and the time
// the schedule was due before it, which together bound the period it
// closes.
type Firing struct {
	Schedule string
	Due      time.Time
	Previous time.Time
}

// Job is the work a schedule starts.
type Job interface {
	// Plan names the period a firing closes and the asynq TaskID its work
	// is enqueued under. Both must follow from f alone.
	Plan(f Firing) (period, taskID string)
	// Fire hands the work of f over (enqueues it). It is called at least
	// once per (schedule, period), again after a crash, so it must be
	// idempotent. Returning an error wrapping ErrSkipFiring records the
	// firing as handled without the work.
	Fire(ctx context.Context, f Firing) error
}

// ErrSkipFiring tells the scheduler a firing needs no work (for example, a
// person already billed an overlapping period by hand).
var ErrSkipFiring = errors.New("firing skipped")

// Schedule is a named cron expression and the job it starts.
type Schedule struct {
	// Name identifies the schedule in the database ("invoicing").
	Name string
	// Spec is a five-field cron expression ("0 2 1,15 * *") or a descriptor
	// such as "@daily", read in the scheduler's Location.
	Spec string
	Job  Job
	// SkipMissed fires only the latest due firing of the catch-up window,
	// for maintenance whose every run does all the work there is (the
	// idempotency sweep): on a fresh database or after a long stop, one run
	// is enough.
	SkipMissed bool
}

// SpecChecker is implemented by jobs that accept only some cron
// expressions (invoicing bills whole days); New refuses the others.
type SpecChecker interface {
	CheckSpec(c cron.Schedule, loc *time.Location) error
}

// Config holds the dependencies and settings of a Scheduler.
type Config struct {
	// DB is the PostgreSQL pool (required).
	DB        *sqlx.DB
	Schedules []Schedule
	// Location is the time zone cron expressions are read in (default UTC).
	Location *time.Location
	// CatchUp is how far back a starting scheduler looks for firings it
	// missed (default 7 days). Firings older than that are left to a person
	// (POST /v1/admin/invoicing/runs).
	CatchUp time.Duration
	// PollInterval is how often the scheduler checks for due firings and
	// renews its lease (default 10s).
	PollInterval time.Duration
	// LeaseTTL is how long a lease lasts unrenewed (default 30s): a killed
	// scheduler's work passes to another after at most this long.
	LeaseTTL time.Duration
	// LeaseName names the lease (default "scheduler").
	LeaseName string
	// Holder names this scheduler in the lease (default host-pid-random).
	Holder string
	// MaxCatchUp caps the firings one schedule catches up per tick (default 100).
	MaxCatchUp int
	// Now is the clock firings are judged by (default time.Now); tests
	// control it. Leases use the database clock.
	Now    func() time.Time
	Logger *slog.Logger
}

type parsedSchedule struct {
	Schedule
	cron cron.Schedule
}

// Scheduler fires schedules; see the package documentation.
type Scheduler struct {
	cfg       Config
	db        *sqlx.DB
	log       *slog.Logger
	schedules []parsedSchedule

	// hook, when set by tests, is called at the stages of a firing:
	// "claim" before its row is inserted, "fire" after.
	hook func(stage string, f Firing)

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	leading bool
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSpec checks a cron expression the way the scheduler reads it.
func ParseSpec(spec string) error {
	_, err := parser.Parse(spec)
	return err
}

// ErrSubDaySchedule is a schedule that fires twice on one calendar day of
// its time zone, where periods are whole days.
var ErrSubDaySchedule = errors.New("fires more than once a day; periods are whole days, so at most one firing a day (such as \"0 2 * * *\")")

// repeatedWallClock reports whether b shows the same date and time of day
// as a in loc: robfig/cron fires twice in the hour a DST change repeats.
func repeatedWallClock(a, b time.Time, loc *time.Location) bool {
	return a.In(loc).Format(time.DateTime) == b.In(loc).Format(time.DateTime)
}

// checkOncePerDay returns ErrSubDaySchedule when two consecutive firings
// of c within the next two years fall on one calendar day in loc.
func checkOncePerDay(c cron.Schedule, loc *time.Location, from time.Time) error {
	until := from.AddDate(2, 0, 0)
	prev := c.Next(from.In(loc))
	for t := c.Next(prev); !t.IsZero() && t.Before(until); prev, t = t, c.Next(t) {
		py, pm, pd := prev.In(loc).Date()
		y, m, d := t.In(loc).Date()
		if py == y && pm == m && pd == d && !repeatedWallClock(prev, t, loc) {
			return fmt.Errorf("%w: %s and %s", ErrSubDaySchedule, prev.In(loc).Format(time.DateTime), t.In(loc).Format("15:04"))
		}
	}
	return nil
}

// New validates cfg and builds a Scheduler.
func New(cfg Config) (*Scheduler, error) {
	if cfg.DB == nil {
		return nil, errors.New("scheduler: DB is required")
	}
	cfg.Location = cmp.Or(cfg.Location, time.UTC)
	cfg.CatchUp = cmp.Or(cfg.CatchUp, 7*24*time.Hour)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 10*time.Second)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 30*time.Second)
	cfg.LeaseName = cmp.Or(cfg.LeaseName, "scheduler")
	cfg.MaxCatchUp = cmp.Or(cfg.MaxCatchUp, 100)
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		cfg.Holder = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), uuid.NewString()[:8])
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.PollInterval <= 0 || cfg.LeaseTTL <= cfg.PollInterval {
		return nil, errors.New("scheduler: PollInterval must be positive and LeaseTTL longer than it")
	}
	if cfg.CatchUp <= cfg.LeaseTTL+cfg.PollInterval {
		// A leader killed at the due time holds the lease for up to LeaseTTL,
		// and its successor looks one poll later.
		return nil, errors.New("scheduler: CatchUp must be longer than LeaseTTL + PollInterval, or a leader killed at the due time loses the firing")
	}
	s := &Scheduler{cfg: cfg, db: cfg.DB, log: cfg.Logger}
	seen := map[string]bool{}
	for _, sc := range cfg.Schedules {
		if sc.Name == "" || sc.Job == nil {
			return nil, errors.New("scheduler: every schedule needs a Name and a Job")
		}
		if seen[sc.Name] {
			return nil, fmt.Errorf("scheduler: schedule %q is listed twice", sc.Name)
		}
		seen[sc.Name] = true
		c, err := parser.Parse(sc.Spec)
		if err != nil {
			return nil, fmt.Errorf("scheduler: schedule %s: cron expression %q: %w", sc.Name, sc.Spec, err)
		}
		if chk, ok := sc.Job.(SpecChecker); ok {
			if err := chk.CheckSpec(c, cfg.Location); err != nil {
				return nil, fmt.Errorf("scheduler: schedule %s: cron expression %q: %w", sc.Name, sc.Spec, err)
			}
		}
		s.schedules = append(s.schedules, parsedSchedule{Schedule: sc, cron: c})
	}
	return s, nil
}

// Holder returns the name this scheduler holds the lease under.
func (s *Scheduler) Holder() string { return s.cfg.Holder }

// Start runs the scheduler in the background until ctx ends or Stop is
// called. It returns at once. Ending ctx behaves like a crash: the lease is
// kept until it expires. Stop hands it over at once.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.done = make(chan struct{})
	go s.loop(ctx, s.done)
	s.log.Info("scheduler started", "holder", s.cfg.Holder, "schedules", len(s.schedules),
		"timezone", s.cfg.Location.String(), "catch_up", s.cfg.CatchUp.String())
	return nil
}

// Stop ends the loop, waits for a firing in progress, and releases the
// lease so another scheduler takes over at once. A second Stop, or Stop
// without Start, does nothing.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("stop scheduler: %w", ctx.Err())
	}
	if err := store.ReleaseLease(ctx, s.db, s.cfg.LeaseName, s.cfg.Holder); err != nil {
		return fmt.Errorf("stop scheduler: %w", err)
	}
	s.log.Info("scheduler stopped", "holder", s.cfg.Holder)
	return nil
}

func (s *Scheduler) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler tick", "error", err)
		}
		t.Reset(s.cfg.PollInterval)
	}
}

// Tick takes or renews the lease and, holding it, fires every schedule's
// due firings within the catch-up window that have not fired, finishes
// firings whose work was never handed over, and records each schedule's
// next run. Without the lease it does nothing. The loop calls it every
// PollInterval.
func (s *Scheduler) Tick(ctx context.Context) error {
	_, ok, err := store.AcquireLease(ctx, s.db, s.cfg.LeaseName, s.cfg.Holder, s.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	s.mu.Lock()
	changed := s.leading != ok
	s.leading = ok
	s.mu.Unlock()
	if changed {
		if ok {
			s.log.Info("scheduler lease taken", "holder", s.cfg.Holder)
		} else {
			s.log.Info("scheduler lease held by another", "holder", s.cfg.Holder)
		}
	}
	if !ok {
		return nil
	}
	now := s.cfg.Now()
	var errs []error
	for _, sc := range s.schedules {
		if err := s.tickSchedule(ctx, sc, now); err != nil {
			errs = append(errs, fmt.Errorf("schedule %s: %w", sc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Leading reports whether the last tick held the lease.
func (s *Scheduler) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading
}

func (s *Scheduler) tickSchedule(ctx context.Context, sc parsedSchedule, now time.Time) error {
	since := now.Add(-s.cfg.CatchUp)
	recorded, err := store.FiringsSince(ctx, s.db, sc.Name, since)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(recorded))
	for _, f := range recorded {
		have[f.Period] = true
	}
	var errs []error
	for _, due := range s.dueBetween(sc, since, now) {
		f := Firing{Schedule: sc.Name, Due: due, Previous: previous(sc.cron, due, s.cfg.Location)}
		period, taskID := sc.Job.Plan(f)
		if have[period] {
			continue
		}
		s.stage("claim", f)
		_, inserted, err := store.InsertFiring(ctx, s.db, store.Firing{
			Schedule: sc.Name, Period: period, DueAt: due, TaskID: taskID, FiredBy: s.cfg.Holder,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !inserted {
			continue
		}
		s.log.Info("schedule fired", "schedule", sc.Name, "period", period, "due_at", due, "task_id", taskID,
			"late_by", now.Sub(due).Round(time.Second).String())
		s.stage("fire", f)
		if err := s.fire(ctx, sc, f, period); err != nil {
			errs = append(errs, err)
		}
	}
	// Firings recorded by a scheduler that died (or failed) before handing
	// their work over.
	pending, err := store.UnenqueuedFirings(ctx, s.db, sc.Name)
	if err != nil {
		errs = append(errs, err)
	}
	for _, row := range pending {
		f := Firing{Schedule: sc.Name, Due: row.DueAt, Previous: previous(sc.cron, row.DueAt, s.cfg.Location)}
		s.log.Info("schedule firing resumed", "schedule", sc.Name, "period", row.Period, "fired_by", row.FiredBy)
		if err := s.fire(ctx, sc, f, row.Period); err != nil {
			errs = append(errs, err)
		}
	}
	next := sc.cron.Next(now.In(s.cfg.Location))
	var nextPtr *time.Time
	if !next.IsZero() {
		nextPtr = &next
	}
	if err := store.UpsertSchedule(ctx, s.db, sc.Name, sc.Spec, s.cfg.Location.String(), nextPtr, s.cfg.Holder); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Scheduler) fire(ctx context.Context, sc parsedSchedule, f Firing, period string) error {
	err := sc.Job.Fire(ctx, f)
	if errors.Is(err, ErrSkipFiring) {
		s.log.Warn("schedule firing skipped", "schedule", sc.Name, "period", period, "reason", err.Error())
		err = nil
	}
	if err != nil {
		return fmt.Errorf("fire %s: %w", period, err)
	}
	return store.MarkFiringEnqueued(ctx, s.db, sc.Name, period)
}

func (s *Scheduler) stage(name string, f Firing) {
	if s.hook != nil {
		s.hook(name, f)
	}
}

// dueBetween returns the firing times in (since, now], oldest first, at
// most MaxCatchUp of them (the latest), or only the latest for a schedule
// that skips missed firings.
func (s *Scheduler) dueBetween(sc parsedSchedule, since, now time.Time) []time.Time {
	var out []time.Time
	var last time.Time
	for t := sc.cron.Next(since.In(s.cfg.Location)); !t.IsZero() && !t.After(now); t = sc.cron.Next(t) {
		if !last.IsZero() && repeatedWallClock(last, t, s.cfg.Location) {
			continue // the hour a DST change repeats: one firing, as in cron
		}
		last = t
		out = append(out, t)
	}
	keep := s.cfg.MaxCatchUp
	if sc.SkipMissed {
		keep = 1
	}
	if len(out) > keep {
		out = out[len(out)-keep:]
	}
	return out
}

// previous returns the latest firing of c before due. Cron schedules only
// run forwards, so it steps forward from ever further back.
func previous(c cron.Schedule, due time.Time, loc *time.Location) time.Time {
	due = due.In(loc)
	for _, back := range []time.Duration{24 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		var last time.Time
		for t := c.Next(due.Add(-back)); !t.IsZero() && t.Before(due); t = c.Next(t) {
			last = t
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}

// Status is a schedule's next run as this scheduler computes it now.
type Status struct {
	Name     string
	Spec     string
	Timezone string
	Next     time.Time
}

// Statuses returns every schedule's next run from now.
func (s *Scheduler) Statuses() []Status {
	now := s.cfg.Now().In(s.cfg.Location)
	out := make([]Status, 0, len(s.schedules))
	for _, sc := range s.schedules {
		out = append(out, Status{Name: sc.Name, Spec: sc.Spec, Timezone: s.cfg.Location.String(), Next: sc.cron.Next(now)})
	}
	return out
}
