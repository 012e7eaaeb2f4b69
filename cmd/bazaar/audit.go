package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/stream"
)

// auditConfig is the consistency auditor's configuration, read from the
// environment by "bazaar audit" and by the roles that run the relay.
type auditConfig struct {
	// Interval between the relay role's periodic audits; 0 turns them off.
	Interval time.Duration
	// Window is how far back a periodic audit (and "bazaar audit" without
	// --since) looks.
	Window time.Duration
	// Repair publishes missing events again.
	Repair bool
	// DLQMaxAge reports dead letters older than this.
	DLQMaxAge time.Duration
}

func loadAuditConfig(getenv func(string) string) (auditConfig, error) {
	r := &envReader{getenv: getenv}
	c := auditConfig{
		Interval:  r.duration("BAZAAR_AUDIT_INTERVAL", 5*time.Minute),
		Window:    r.duration("BAZAAR_AUDIT_WINDOW", 24*time.Hour),
		Repair:    r.boolean("BAZAAR_AUDIT_REPAIR", false),
		DLQMaxAge: r.duration("BAZAAR_AUDIT_DLQ_MAX_AGE", 24*time.Hour),
	}
	if r.err == nil && c.Window == 0 {
		r.fail("BAZAAR_AUDIT_WINDOW", "must be above zero")
	}
	if r.err == nil && c.DLQMaxAge == 0 {
		r.fail("BAZAAR_AUDIT_DLQ_MAX_AGE", "must be above zero")
	}
	if r.err != nil {
		return auditConfig{}, fmt.Errorf("config: %w", r.err)
	}
	return c, nil
}

// LogValue lets the config be logged at start.
func (c auditConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Duration("interval", c.Interval),
		slog.Duration("window", c.Window),
		slog.Bool("repair", c.Repair),
		slog.Duration("dlq_max_age", c.DLQMaxAge),
	)
}

func (c auditConfig) auditor(db *sqlx.DB, rdb redis.UniversalClient, names stream.Names, log *slog.Logger, obs *observability) (*stream.Auditor, error) {
	cfg := stream.AuditConfig{
		DB: db, Redis: rdb, Names: names, Logger: log,
		Interval: c.Interval, Window: c.Window, Repair: c.Repair, DLQMaxAge: c.DLQMaxAge,
	}
	if obs != nil {
		cfg.Registry = obs.Registry
	}
	return stream.NewAuditor(cfg)
}

// periodicAudit returns the auditor the relay role runs, or nil when
// BAZAAR_AUDIT_INTERVAL is 0.
func periodicAudit(getenv func(string) string, db *sqlx.DB, rdb redis.UniversalClient, names stream.Names, log *slog.Logger, obs *observability) ([]component, error) {
	ac, err := loadAuditConfig(getenv)
	if err != nil {
		return nil, err
	}
	log.Info("audit config", "audit", ac)
	if ac.Interval == 0 {
		return nil, nil
	}
	a, err := ac.auditor(db, rdb, names, log, obs)
	if err != nil {
		return nil, err
	}
	return []component{a}, nil
}

// parseSince reads a --since flag: an RFC 3339 time or a positive
// duration before now, never in the future. The error names no command;
// callers prefix it.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("is required")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.After(now) {
			return time.Time{}, fmt.Errorf("%q is in the future", s)
		}
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time such as 2026-01-02T15:04:05Z nor a duration such as 6h", s)
}

func init() {
	var since string
	var repair bool
	register(&command{
		name:     "audit",
		short:    "compare the events PostgreSQL marks published with the streams; --repair publishes missing ones again",
		synopsis: "[--since T] [--repair]",
		detail: `Reports events marked published but missing from their stream (within what
the stream still holds), stream entries with no event row, and dead letters
older than BAZAAR_AUDIT_DLQ_MAX_AGE. Exits with 1 when anything is left to
look at (missing events not repaired, orphan entries, old dead letters).`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&since, "since", "", "oldest event time to look at: RFC 3339 or a duration before now (default BAZAAR_AUDIT_WINDOW, 24h)")
			fs.BoolVar(&repair, "repair", false, "publish missing events again (also BAZAAR_AUDIT_REPAIR=true)")
		},
		run: func(ctx context.Context, env *environment, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("audit: unexpected argument %q (run \"bazaar audit -h\")", args[0])}
			}
			cfg, err := loadConfig(env.getenv)
			if err != nil {
				return err
			}
			ac, err := loadAuditConfig(env.getenv)
			if err != nil {
				return err
			}
			from := time.Now().Add(-ac.Window)
			if since != "" {
				if from, err = parseSince(since, time.Now()); err != nil {
					return usageError{"audit: --since " + err.Error()}
				}
			}
			db, rdb, closeAll, err := connect(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			a, err := ac.auditor(db, rdb, cfg.names(), slog.New(slog.DiscardHandler), nil)
			if err != nil {
				return err
			}
			rep, err := a.Run(ctx, stream.AuditOptions{Since: from, Repair: repair || ac.Repair})
			if errors.Is(err, stream.ErrAuditBusy) {
				return errors.New("audit: another audit is running (a relay's periodic one); try again in a minute")
			}
			if err != nil {
				return err
			}
			printAudit(env.stdout, rep)
			if !rep.Consistent() {
				return fmt.Errorf("audit: %d missing (%d repaired), %d orphan entries, %d old dead letters",
					rep.Missing, rep.Repaired, rep.Orphans, rep.StaleDeadLetters)
			}
			return nil
		},
	})
}

func printAudit(w io.Writer, rep stream.AuditReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "audited %d published events on %d streams since %s\n",
		rep.Checked, rep.Streams, rep.Since.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "missing from their stream: %d", rep.Missing)
	if rep.Repaired > 0 || rep.Missing > 0 {
		fmt.Fprintf(&b, " (published again: %d)", rep.Repaired)
	}
	b.WriteString("\n")
	for _, m := range rep.MissingEvents {
		fmt.Fprintf(&b, "  %s  seq %d  event %s  was %s  at %s\n", m.Stream, m.Seq, m.ID, m.StreamID, m.Time.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "entries with no event row: %d\n", rep.Orphans)
	for _, o := range rep.OrphanEntries {
		fmt.Fprintf(&b, "  %s  entry %s  event %q\n", o.Stream, o.EntryID, o.EventID)
	}
	fmt.Fprintf(&b, "dead letters older than %s: %d\n", rep.DLQMaxAge, rep.StaleDeadLetters)
	for _, s := range rep.StaleEntries {
		fmt.Fprintf(&b, "  group %s  entry %s  event %s  age %s\n", s.Group, s.ID, s.EventID, s.Age.Truncate(time.Second))
	}
	if len(rep.MissingEvents) < rep.Missing || len(rep.OrphanEntries) < rep.Orphans || len(rep.StaleEntries) < rep.StaleDeadLetters {
		b.WriteString("(lists show the first findings of each kind)\n")
	}
	fmt.Fprint(w, b.String())
}
