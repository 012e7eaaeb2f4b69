package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

// InvoicingSchedule is the name of the invoicing schedule.
const InvoicingSchedule = "invoicing"

// DefaultInvoicingSpec runs invoicing at 02:00 on the 1st and the 15th: the
// run on the 1st bills the 15th to the end of the previous month, the run
// on the 15th bills the 1st to the 14th.
const DefaultInvoicingSpec = "0 2 1,15 * *"

// InvoicingJob starts the invoice run of the period a firing closes: the
// calendar days from the previous firing's day up to, not including, this
// firing's day, in the invoicer's time zone. Orders confirmed between
// midnight and the firing time belong to the next period.
type InvoicingJob struct {
	Invoicer *invoicing.Invoicer
}

// NewInvoicingSchedule returns the invoicing schedule on spec.
func NewInvoicingSchedule(spec string, iv *invoicing.Invoicer) Schedule {
	return Schedule{Name: InvoicingSchedule, Spec: spec, Job: InvoicingJob{Invoicer: iv}}
}

func (j InvoicingJob) period(f Firing) invoicing.Period {
	prev := f.Previous
	if prev.IsZero() {
		prev = f.Due.AddDate(0, 0, -1)
	}
	return invoicing.PeriodBetween(prev, f.Due, j.Invoicer.Location())
}

// CheckSpec refuses a schedule that fires more than once on a calendar
// day of loc: a period is the whole days between two firings, so a second
// firing on one day would close an empty period.
func (j InvoicingJob) CheckSpec(c cron.Schedule, loc *time.Location) error {
	return checkOncePerDay(c, loc, time.Now())
}

// CheckInvoicingSpec checks an invoicing cron expression as New does, for
// a configuration error at start.
func CheckInvoicingSpec(spec string, loc *time.Location) error {
	c, err := parser.Parse(spec)
	if err != nil {
		return err
	}
	return InvoicingJob{}.CheckSpec(c, loc)
}

// Plan names the period by its first day; the TaskID is the run task's.
func (j InvoicingJob) Plan(f Firing) (string, string) {
	p := j.period(f)
	return p.Key(), invoicing.InvoiceRunTaskID(p)
}

// Fire starts (or finds) the period's run and enqueues its task. A period
// that overlaps a run started by hand is skipped: those orders are billed.
func (j InvoicingJob) Fire(ctx context.Context, f Firing) error {
	p := j.period(f)
	_, _, err := j.Invoicer.StartRun(ctx, invoicing.RunRequest{Period: p, Trigger: invoicing.TriggerSchedule})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w", ErrSkipFiring, err)
	}
	return err
}
