// Package migrations holds Bazaar's PostgreSQL schema as numbered, embedded
// SQL files and applies them under a PostgreSQL advisory lock, so that any
// number of processes may call Up at once and exactly one does the work.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

//go:embed *.sql
var files embed.FS

// FS returns the embedded migration files.
func FS() fs.FS { return files }

// Status describes the schema version of a database.
type Status struct {
	// Current is the version applied to the database, 0 when none is.
	Current uint
	// Latest is the highest version embedded in this binary.
	Latest uint
	// Dirty is true when a migration failed half way and needs a person.
	Dirty bool
}

// UpToDate reports whether the database has every embedded migration applied.
func (s Status) UpToDate() bool { return !s.Dirty && s.Current == s.Latest }

// Serves reports whether this binary can run on the database: every
// embedded migration is applied and none failed half way. A schema ahead
// of the binary serves too, because migrations stay compatible with the
// previous release while a rolling upgrade replaces its processes.
func (s Status) Serves() bool { return !s.Dirty && s.Current >= s.Latest }

// Latest returns the highest migration version embedded in this binary.
func Latest() uint {
	entries, _ := fs.ReadDir(files, ".")
	var versions []uint
	for _, e := range entries {
		head, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(head, 10, 32)
		if err == nil {
			versions = append(versions, uint(v))
		}
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	if len(versions) == 0 {
		return 0
	}
	return versions[len(versions)-1]
}

// Up applies every pending migration.
func Up(ctx context.Context, db *sql.DB) error {
	return withMigrate(ctx, db, func(m *migrate.Migrate) error {
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("migrate up: %w", err)
		}
		return nil
	})
}

// To migrates up or down to exactly version, which tests use to build a
// database as an older release left it.
func To(ctx context.Context, db *sql.DB, version uint) error {
	return withMigrate(ctx, db, func(m *migrate.Migrate) error {
		if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("migrate to %d: %w", version, err)
		}
		return nil
	})
}

// Down reverts the given number of migrations (all of them when steps <= 0).
func Down(ctx context.Context, db *sql.DB, steps int) error {
	return withMigrate(ctx, db, func(m *migrate.Migrate) error {
		var err error
		if steps <= 0 {
			err = m.Down()
		} else {
			err = m.Steps(-steps)
		}
		if err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("migrate down: %w", err)
		}
		return nil
	})
}

// CurrentStatus reads the schema version of the database.
func CurrentStatus(ctx context.Context, db *sql.DB) (Status, error) {
	st := Status{Latest: Latest()}
	// Read the version table directly: it is cheap enough for a readiness
	// probe and takes no lock.
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return st, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return st, nil
	}
	var v int64
	err := db.QueryRowContext(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&v, &st.Dirty)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read schema version: %w", err)
	}
	if v > 0 {
		st.Current = uint(v)
	}
	return st, nil
}

func withMigrate(ctx context.Context, db *sql.DB, fn func(*migrate.Migrate) error) error {
	src, err := iofs.New(files, ".")
	if err != nil {
		return fmt.Errorf("open migrations: %w", err)
	}
	// A dedicated connection keeps the advisory lock and the migration on
	// one session, and closing the driver must not close the caller's pool.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrations connection: %w", err)
	}
	drv, err := postgres.WithConnection(ctx, conn, &postgres.Config{})
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("migrations driver: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "postgres", drv)
	if err != nil {
		_ = drv.Close()
		return fmt.Errorf("migrations: %w", err)
	}
	defer m.Close()
	return fn(m)
}
