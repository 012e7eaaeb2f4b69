package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/bazaarhq/bazaar/sql/migrations"
)

func init() {
	var steps int
	register(&command{
		name:     "migrate",
		short:    "apply (up), revert (down) or show (status) database migrations",
		detail:   "status exits with 1 when migrations are pending or the schema is dirty.",
		synopsis: "up|down|status [-steps N]",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&steps, "steps", 1, "with down: how many migrations to revert (0 = all)")
		},
		run: func(ctx context.Context, env *environment, args []string) error {
			// Flags may follow the action too: "migrate down -steps 2".
			if len(args) > 0 {
				if err := env.flags.Parse(args[1:]); err != nil {
					return usageError{fmt.Sprintf("migrate: %v (run \"bazaar migrate -h\")", err)}
				}
				args = append([]string{args[0]}, env.flags.Args()...)
			}
			if len(args) != 1 {
				return usageError{"usage: bazaar migrate up|down|status [-steps N]"}
			}
			cfg, err := loadConfig(env.getenv)
			if err != nil {
				return err
			}
			// Migrations hold a session advisory lock: they need a session
			// of their own, not a transaction pooler.
			db, err := openDirectDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			switch args[0] {
			case "up":
				if err := migrations.Up(ctx, db.DB); err != nil {
					return err
				}
			case "down":
				if err := migrations.Down(ctx, db.DB, steps); err != nil {
					return err
				}
			case "status":
			default:
				return usageError{fmt.Sprintf("unknown migrate action %q: use up, down or status", args[0])}
			}
			st, err := migrations.CurrentStatus(ctx, db.DB)
			if err != nil {
				return err
			}
			state := "up to date"
			switch {
			case st.Dirty:
				state = "dirty: a migration failed half way; fix it by hand, then run migrate again"
			case st.Current < st.Latest:
				state = fmt.Sprintf("%d pending", st.Latest-st.Current)
			case st.Current > st.Latest:
				state = "database is newer than this binary"
			}
			fmt.Fprintf(env.stdout, "schema version %d of %d (%s)\n", st.Current, st.Latest, state)
			// Scripts and deploy checks read the exit status: the roles of
			// this binary do not serve on such a schema.
			if args[0] == "status" && !st.Serves() {
				if st.Dirty {
					return errors.New("migrate status: the schema is dirty")
				}
				return fmt.Errorf("migrate status: %d migration(s) pending; run \"bazaar migrate up\"", st.Latest-st.Current)
			}
			return nil
		},
	})
}
