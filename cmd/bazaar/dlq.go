package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

const dlqUsage = `usage:
  bazaar dlq list                         consumer groups with their dead-letter depth
  bazaar dlq list <group> [-limit N]      a group's dead letters, oldest first
  bazaar dlq show <group> <id>            one dead letter with its event
  bazaar dlq redrive <group> <id>...|-count N|-all -reason TEXT
                                          send dead letters back to that group alone
  bazaar dlq purge <group> <id>...|-all -reason TEXT
                                          delete dead letters
Redrive and purge need a reason; each is written to the audit log as cli:$USER.`

func init() {
	register(&command{
		name:     "dlq",
		short:    "list, show, redrive or purge consumer groups' dead letters",
		detail:   dlqUsage,
		synopsis: "list|show|redrive|purge [arguments] (-h after an action: its flags)",
		help:     dlqHelp,
		run: func(ctx context.Context, env *environment, args []string) error {
			if len(args) == 0 {
				return usageError{dlqUsage}
			}
			cfg, err := loadConfig(env.getenv)
			if err != nil {
				return err
			}
			rdb, err := openRedis(ctx, cfg)
			if err != nil {
				return err
			}
			defer rdb.Close()
			db, err := openDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			admin, err := stream.NewAdmin(stream.AdminConfig{Redis: rdb, DB: db, Names: cfg.names()})
			if err != nil {
				return err
			}
			err = runDLQ(ctx, admin, dlqAudit{db: db, actor: cliActor(env.getenv)}, env.stdout, args[0], args[1:])
			return explainDLQError(ctx, admin, err)
		},
	})
}

// dlqOptions are the flags of the dlq actions.
type dlqOptions struct {
	limit  int
	count  int
	all    bool
	reason string
}

// dlqActions maps each action to its usage line and the flags it takes.
var dlqActions = map[string]struct {
	usage string
	flags func(fs *flag.FlagSet, o *dlqOptions)
}{
	"list": {"list [<group> [-limit N]]", func(fs *flag.FlagSet, o *dlqOptions) {
		fs.IntVar(&o.limit, "limit", 50, "with a group: how many dead letters to show, oldest first")
	}},
	"show": {"show <group> <id>", func(*flag.FlagSet, *dlqOptions) {}},
	"redrive": {"redrive <group> <id>...|-count N|-all -reason TEXT", func(fs *flag.FlagSet, o *dlqOptions) {
		fs.BoolVar(&o.all, "all", false, "redrive every dead letter of the group")
		fs.IntVar(&o.count, "count", 0, "redrive the N oldest dead letters of the group")
		fs.StringVar(&o.reason, "reason", "", "why (required), for the audit log")
	}},
	"purge": {"purge <group> <id>...|-all -reason TEXT", func(fs *flag.FlagSet, o *dlqOptions) {
		fs.BoolVar(&o.all, "all", false, "purge every dead letter of the group")
		fs.StringVar(&o.reason, "reason", "", "why (required), for the audit log")
	}},
}

// dlqHelp prints the help of "bazaar dlq <action> -h"; it needs no server.
func dlqHelp(w io.Writer, args []string) bool {
	if len(args) == 0 {
		return false
	}
	a, ok := dlqActions[args[0]]
	if !ok {
		return false
	}
	fs := flag.NewFlagSet("bazaar dlq "+args[0], flag.ContinueOnError)
	a.flags(fs, &dlqOptions{})
	fmt.Fprintf(w, "usage: bazaar dlq %s\n", a.usage)
	printFlags(w, fs)
	return true
}

// dlqArgs parses an action's flags wherever they stand among its arguments.
func dlqArgs(action string, args []string, o *dlqOptions) ([]string, error) {
	fs := flag.NewFlagSet("bazaar dlq "+action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dlqActions[action].flags(fs, o)
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{fmt.Sprintf("dlq %s: %v", action, err)}
		}
		args = fs.Args()
		if len(args) > 0 {
			positional = append(positional, args[0])
			args = args[1:]
		}
	}
	return positional, nil
}

// dlqAudit writes the audit rows of the CLI's dead-letter actions.
type dlqAudit struct {
	db    *sqlx.DB
	actor string
}

func runDLQ(ctx context.Context, admin *stream.Admin, audit dlqAudit, out io.Writer, action string, args []string) error {
	var o dlqOptions
	switch action {
	case "list":
		pos, err := dlqArgs(action, args, &o)
		if err != nil {
			return err
		}
		switch len(pos) {
		case 0:
			return listGroups(ctx, admin, out)
		case 1:
			if o.limit < 1 {
				return usageError{"dlq list: -limit must be at least 1"}
			}
			return listDeadLetters(ctx, admin, out, pos[0], o.limit)
		}
		return usageError{"usage: bazaar dlq list [<group> [-limit N]]"}
	case "show":
		pos, err := dlqArgs(action, args, &o)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return usageError{"usage: bazaar dlq show <group> <id>"}
		}
		d, err := admin.DeadLetterByID(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		return showDeadLetter(out, d)
	case "redrive", "purge":
		pos, err := dlqArgs(action, args, &o)
		if err != nil {
			return err
		}
		if len(pos) < 1 {
			return usageError{"usage: bazaar dlq " + dlqActions[action].usage}
		}
		if strings.TrimSpace(o.reason) == "" {
			return usageError{"dlq " + action + ": -reason is required (it goes to the audit log)"}
		}
		sel := stream.Selection{IDs: pos[1:], Count: o.count, All: o.all}
		e, err := cliAudit(audit.actor, "dlq."+action, "group:"+pos[0], strings.TrimSpace(o.reason),
			map[string]any{"ids": sel.IDs, "count": sel.Count, "all": sel.All})
		if err != nil {
			return err
		}
		var n int
		if action == "redrive" {
			n, err = admin.Redrive(ctx, pos[0], sel)
		} else {
			n, err = admin.Purge(ctx, pos[0], sel)
		}
		// The dead letters live in Redis: the row records the outcome
		// after the fact, failures of Redis too; a refused action (unknown
		// group or entry, bad selection) changed nothing and leaves none.
		refused := errors.Is(err, stream.ErrUnknownGroup) || errors.Is(err, stream.ErrUnknownEntry) || errors.Is(err, stream.ErrBadSelection)
		if !refused {
			count := int64(n)
			e.Count = &count
			if err != nil {
				e.Result = "error: " + err.Error()
			}
			if _, aerr := store.InsertAuditEntry(ctx, audit.db, e); aerr != nil {
				return errors.Join(err, fmt.Errorf("audit log: %w", aerr))
			}
		}
		if err != nil {
			return err
		}
		verb := map[string]string{"redrive": "redriven to the retry stream of", "purge": "purged from"}[action]
		fmt.Fprintf(out, "%d dead letter(s) %s %s\n", n, verb, pos[0])
		return nil
	}
	return usageError{fmt.Sprintf("unknown dlq action %q\n%s", action, dlqUsage)}
}

// explainDLQError turns the admin's errors into one line a person can act on.
func explainDLQError(ctx context.Context, admin *stream.Admin, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, stream.ErrUnknownGroup):
		groups, gerr := admin.Groups(ctx)
		if gerr != nil || len(groups) == 0 {
			return fmt.Errorf("%w (no consumer group exists yet)", err)
		}
		return fmt.Errorf("%w (known groups: %s)", err, strings.Join(groups, ", "))
	case errors.Is(err, stream.ErrBadSelection):
		return usageError{err.Error()}
	}
	return err
}

func listGroups(ctx context.Context, admin *stream.Admin, out io.Writer) error {
	ov, err := admin.Inspect(ctx)
	if err != nil {
		return err
	}
	type row struct {
		pending, dlq, retry int64
		streams             []string
	}
	rows := map[string]*row{}
	var order []string
	for _, s := range ov.Streams {
		for _, g := range s.Groups {
			r, ok := rows[g.Name]
			if !ok {
				r = &row{dlq: g.DLQDepth, retry: g.RetryDepth}
				rows[g.Name] = r
				order = append(order, g.Name)
			}
			r.pending += g.Pending
			r.streams = append(r.streams, s.Name)
		}
	}
	if len(order) == 0 {
		fmt.Fprintln(out, "no consumer groups")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDEAD LETTERS\tREDRIVEN WAITING\tPENDING\tSTREAMS")
	for _, name := range order {
		r := rows[name]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", name, r.dlq, r.retry, r.pending, len(r.streams))
	}
	if ov.Outbox != nil {
		fmt.Fprintf(tw, "\noutbox backlog: %d event(s), oldest waiting %s\n", ov.Outbox.Backlog, ov.Outbox.OldestAge.Round(time.Millisecond))
	}
	return tw.Flush()
}

func listDeadLetters(ctx context.Context, admin *stream.Admin, out io.Writer, group string, limit int) error {
	dead, total, err := admin.DeadLetters(ctx, group, limit)
	if err != nil {
		return err
	}
	if total == 0 {
		fmt.Fprintf(out, "no dead letters in %s\n", group)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFAILED AT\tTYPE\tSUBJECT\tDELIVERIES\tERROR")
	for _, d := range dead {
		typ, subject := d.Envelope.Type, d.Envelope.Subject
		if d.DecodeError != "" {
			typ, subject = "(unreadable)", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.FailedAt.Format(time.RFC3339), typ, subject, d.Deliveries, oneLine(d.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if int64(len(dead)) < total {
		fmt.Fprintf(out, "showing %d of %d; use -limit to see more\n", len(dead), total)
	}
	return nil
}

func showDeadLetter(out io.Writer, d stream.DeadLetter) error {
	fmt.Fprintf(out, "id:          %s\nfrom:        %s entry %s\nfailed at:   %s\ndeliveries:  %d\nerror:       %s\n",
		d.ID, d.Stream, d.EntryID, d.FailedAt.Format(time.RFC3339Nano), d.Deliveries, d.Error)
	if d.DecodeError != "" {
		fmt.Fprintf(out, "event:       unreadable: %s\n", d.DecodeError)
		return nil
	}
	b, err := json.MarshalIndent(d.Envelope, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "event:\n%s\n", b)
	return nil
}

func oneLine(s string, maxLen int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxLen {
		return s[:maxLen-1] + "…"
	}
	return s
}
