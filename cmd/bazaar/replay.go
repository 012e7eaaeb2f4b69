package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

func init() {
	register(&command{
		name:     "replay",
		short:    "replay one seller's events to one consumer group from a time",
		detail:   "The seller's published events from the time on go, in the order they were recorded, to the group's retry stream, which no other group reads. The replay is written to the audit log as cli:$USER with its reason.",
		synopsis: "--group G --seller S --since T --reason R",
		flags: func(fs *flag.FlagSet) {
			fs.String("group", "", "the consumer group to replay to (required)")
			fs.String("seller", "", "the seller's id (required)")
			fs.String("since", "", "an RFC 3339 time, or a duration before now such as 6h (required)")
			fs.String("reason", "", "why, for the audit log (required)")
		},
		run: func(ctx context.Context, env *environment, args []string) error {
			if len(args) > 0 {
				return usageError{"usage: bazaar replay --group G --seller S --since T --reason R"}
			}
			get := func(name string) string { return env.flags.Lookup(name).Value.String() }
			group := get("group")
			if group == "" {
				return usageError{"replay: --group is required"}
			}
			seller, err := uuid.Parse(get("seller"))
			if err != nil {
				return usageError{fmt.Sprintf("replay: --seller %q is no seller id", get("seller"))}
			}
			since, err := parseSince(get("since"), time.Now())
			if err != nil {
				return usageError{"replay: --since " + err.Error()}
			}
			reason := strings.TrimSpace(get("reason"))
			if reason == "" {
				return usageError{"replay: --reason is required (it goes to the audit log)"}
			}
			e, err := cliAudit(cliActor(env.getenv), "seller.replay", "seller:"+seller.String(), reason,
				map[string]any{"group": group, "since": since.UTC()})
			if err != nil {
				return err
			}
			cfg, err := loadConfig(env.getenv)
			if err != nil {
				return err
			}
			db, rdb, closeAll, err := connect(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			if _, err := store.GetSeller(ctx, db, seller); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no seller %s", seller)
				}
				return err
			}
			admin, err := stream.NewAdmin(stream.AdminConfig{Redis: rdb, DB: db, Names: cfg.names()})
			if err != nil {
				return err
			}
			n, err := admin.ReplaySeller(ctx, group, seller, since)
			// The replay's effect is in Redis: its row records the outcome
			// after the fact; an unknown group changed nothing and leaves none.
			if !errors.Is(err, stream.ErrUnknownGroup) {
				count := int64(n)
				e.Count = &count
				if err != nil {
					e.Result = "error: " + err.Error()
				}
				if _, aerr := store.InsertAuditEntry(ctx, db, e); aerr != nil {
					return errors.Join(err, fmt.Errorf("audit log: %w", aerr))
				}
			}
			if err != nil {
				return explainDLQError(ctx, admin, err)
			}
			fmt.Fprintf(env.stdout, "%d event(s) of seller %s since %s queued for %s\n", n, seller, since.UTC().Format(time.RFC3339), group)
			return nil
		},
	})
}
