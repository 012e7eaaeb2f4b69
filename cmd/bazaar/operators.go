package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

const operatorsUsage = `usage:
  bazaar operators add NAME --role ROLE [--reason TEXT]
                                          add an operator; prints its credential, once
  bazaar operators list [--revoked]       the operators (with --revoked, revoked ones too)
  bazaar operators set-role NAME --role ROLE [--reason TEXT]
                                          change an operator's role
  bazaar operators revoke NAME [--reason TEXT]
                                          revoke an operator's credential and end its sessions
Roles: viewer (reads), operator (also repairs), admin (also keys, operators, purge).
Each change is written to the audit log as cli:$USER.`

// operatorOptions are the flags of the operators actions.
type operatorOptions struct {
	role    string
	reason  string
	revoked bool
}

var operatorActions = map[string]struct {
	usage string
	flags func(fs *flag.FlagSet, o *operatorOptions)
}{
	"add": {"add NAME --role ROLE [--reason TEXT]", func(fs *flag.FlagSet, o *operatorOptions) {
		fs.StringVar(&o.role, "role", "", "viewer, operator or admin")
		fs.StringVar(&o.reason, "reason", "", "why, for the audit log")
	}},
	"list": {"list [--revoked]", func(fs *flag.FlagSet, o *operatorOptions) {
		fs.BoolVar(&o.revoked, "revoked", false, "list revoked operators too")
	}},
	"set-role": {"set-role NAME --role ROLE [--reason TEXT]", func(fs *flag.FlagSet, o *operatorOptions) {
		fs.StringVar(&o.role, "role", "", "viewer, operator or admin")
		fs.StringVar(&o.reason, "reason", "", "why, for the audit log")
	}},
	"revoke": {"revoke NAME [--reason TEXT]", func(fs *flag.FlagSet, o *operatorOptions) {
		fs.StringVar(&o.reason, "reason", "", "why, for the audit log")
	}},
}

func init() {
	register(&command{
		name:     "operators",
		short:    "add, list, change the role of or revoke named operators",
		detail:   operatorsUsage,
		synopsis: "add|list|set-role|revoke [arguments] (-h after an action: its flags)",
		help:     operatorsHelp,
		run: func(ctx context.Context, env *environment, args []string) error {
			if len(args) == 0 {
				return usageError{operatorsUsage}
			}
			a, ok := operatorActions[args[0]]
			if !ok {
				return usageError{fmt.Sprintf("unknown operators action %q\n%s", args[0], operatorsUsage)}
			}
			var o operatorOptions
			pos, err := actionArgs("operators "+args[0], args[1:], func(fs *flag.FlagSet) { a.flags(fs, &o) })
			if err != nil {
				return err
			}
			cfg, err := loadConfig(env.getenv)
			if err != nil {
				return err
			}
			db, err := openDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			return runOperators(ctx, db, cliActor(env.getenv), env.stdout, args[0], pos, o)
		},
	})
}

// operatorsHelp prints the help of "bazaar operators <action> -h".
func operatorsHelp(w io.Writer, args []string) bool {
	if len(args) == 0 {
		return false
	}
	a, ok := operatorActions[args[0]]
	if !ok {
		return false
	}
	fs := flag.NewFlagSet("bazaar operators "+args[0], flag.ContinueOnError)
	a.flags(fs, &operatorOptions{})
	fmt.Fprintf(w, "usage: bazaar operators %s\n", a.usage)
	printFlags(w, fs)
	return true
}

// actionArgs parses an action's flags wherever they stand among its
// arguments and returns the positional ones.
func actionArgs(name string, args []string, flags func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("bazaar "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags(fs)
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{fmt.Sprintf("%s: %v", name, err)}
		}
		args = fs.Args()
		if len(args) > 0 {
			positional = append(positional, args[0])
			args = args[1:]
		}
	}
	return positional, nil
}

// cliActor names the person running the CLI in the audit log.
func cliActor(getenv func(string) string) string {
	if u := getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli:unknown"
}

// cliAudit starts the audit row of a CLI action.
func cliAudit(actor, action, target, reason string, params any) (store.AuditEntry, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("audit parameters: %w", err)
	}
	return store.AuditEntry{Actor: actor, Role: "cli", Action: action, Target: target, Reason: reason, Params: b, Result: "ok"}, nil
}

func runOperators(ctx context.Context, db *sqlx.DB, actor string, out io.Writer, action string, pos []string, o operatorOptions) error {
	one := func() (string, error) {
		if len(pos) != 1 {
			return "", usageError{"usage: bazaar operators " + operatorActions[action].usage}
		}
		return pos[0], nil
	}
	role := store.OperatorRole(o.role)
	switch action {
	case "list":
		if len(pos) != 0 {
			return usageError{"usage: bazaar operators " + operatorActions[action].usage}
		}
		return listOperators(ctx, db, out, o.revoked)
	case "add":
		name, err := one()
		if err != nil {
			return err
		}
		if !role.Valid() {
			return usageError{"operators add: --role must be viewer, operator or admin"}
		}
		var secret string
		err = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
			var display string
			if secret, display, err = store.NewOperatorToken(); err != nil {
				return err
			}
			op, err := store.CreateOperator(ctx, tx, name, role, secret, display)
			if err != nil {
				return err
			}
			return auditOperator(ctx, tx, actor, "operator.create", op, o.reason, map[string]any{"id": op.ID, "name": op.Name, "role": op.Role})
		})
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("an active operator is named %q; revoke it first or pick another name", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "added %s as %s; credential (shown once, keep it secret):\n%s\n", name, role, secret)
		return nil
	case "set-role":
		name, err := one()
		if err != nil {
			return err
		}
		if !role.Valid() {
			return usageError{"operators set-role: --role must be viewer, operator or admin"}
		}
		err = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
			before, err := store.ActiveOperatorByName(ctx, tx, name)
			if err != nil {
				return err
			}
			op, err := store.SetOperatorRole(ctx, tx, before.ID, role)
			if err != nil {
				return err
			}
			return auditOperator(ctx, tx, actor, "operator.set_role", op, o.reason, map[string]any{"id": op.ID, "from": before.Role, "to": op.Role})
		})
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no active operator is named %q", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s is now %s\n", name, role)
		return nil
	case "revoke":
		name, err := one()
		if err != nil {
			return err
		}
		err = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
			op, err := store.ActiveOperatorByName(ctx, tx, name)
			if err != nil {
				return err
			}
			if op, err = store.RevokeOperator(ctx, tx, op.ID); err != nil {
				return err
			}
			return auditOperator(ctx, tx, actor, "operator.revoke", op, o.reason, map[string]any{"id": op.ID})
		})
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no active operator is named %q", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "revoked %s; its credential and sessions no longer work\n", name)
		return nil
	}
	return usageError{fmt.Sprintf("unknown operators action %q\n%s", action, operatorsUsage)}
}

func auditOperator(ctx context.Context, tx *sqlx.Tx, actor, action string, op store.Operator, reason string, params any) error {
	e, err := cliAudit(actor, action, "operator:"+op.Name, reason, params)
	if err != nil {
		return err
	}
	_, err = store.InsertAuditEntry(ctx, tx, e)
	return err
}

func listOperators(ctx context.Context, db *sqlx.DB, out io.Writer, withRevoked bool) error {
	ops, err := store.ListOperators(ctx, db, withRevoked)
	if err != nil {
		return err
	}
	if len(ops) == 0 {
		fmt.Fprintln(out, "no operators (add one with: bazaar operators add NAME --role ROLE)")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tCREDENTIAL\tCREATED\tREVOKED")
	for _, op := range ops {
		revoked := "-"
		if op.RevokedAt != nil {
			revoked = op.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\n", op.Name, op.Role, op.TokenPrefix, op.CreatedAt.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}
