// Package storetest gives each test its own freshly migrated PostgreSQL
// database, cloned from a template that is migrated once per schema version,
// and drops it when the test ends.
//
// The server is the one at TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable).
package storetest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver.

	"github.com/bazaarhq/bazaar/sql/migrations"
)

// AdminURL is the maintenance database URL tests connect to first.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// MaxConns caps the pool NewDB returns, so the suite passes with 40 free
// PostgreSQL connections. A test holds at most MaxConns connections to its
// database, plus one short-lived admin connection while it creates or drops
// it; work that wants more (TestLastUnitsRaceSellsExactlyTheStock's 20
// workers and 50 buyers wanted 57 at once) queues for a connection, as it
// would under load in production. Worst case: go test runs -p binaries at
// once and each runs -parallel tests at once (both GOMAXPROCS by default),
// so p × parallel × (MaxConns+1), 2 × 2 × 5 = 20 on 2 cores (measured peaks
// per binary there: api 4, stream 6, workers 8, cmd/bazaar 7, whose tests
// run the binary's own wiring with its pool of at most 25, see openDB). On
// top come the pools benchmarks open themselves (SSE load 8, stream 16,
// invoicing 20: -bench only, one at a time). On a machine with more cores,
// pass -p and -parallel to stay within 40.
const MaxConns = 4

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
	counter      atomic.Int64
)

// NewDB creates a fresh migrated database for t and returns a pool on it and
// its URL. The database is dropped in t.Cleanup.
func NewDB(t testing.TB) (*sqlx.DB, string) {
	t.Helper()
	ctx := context.Background()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(ctx) })
	if templateErr != nil {
		t.Fatalf("storetest: template database: %v", templateErr)
	}
	admin, err := sql.Open("postgres", AdminURL())
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	defer admin.Close()

	name := fmt.Sprintf("bazaar_t_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, counter.Add(1))
	// CREATE DATABASE ... TEMPLATE fails while another session is connected
	// to the template, so retry briefly when parallel packages clone at once.
	for attempt := 0; ; attempt++ {
		_, err = admin.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, templateName))
		if err == nil {
			break
		}
		if attempt > 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			t.Fatalf("storetest: create database: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dsn := withDatabase(AdminURL(), name)
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	db.SetMaxOpenConns(MaxConns)
	t.Cleanup(func() {
		_ = db.Close()
		admin, err := sql.Open("postgres", AdminURL())
		if err != nil {
			t.Errorf("storetest: %v", err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			t.Errorf("storetest: drop database: %v", err)
		}
	})
	return db, dsn
}

// NewDBAt creates a fresh database for t migrated only up to version, as
// an older release left it, for tests of the migrations after it. It takes
// no template (each call runs the migrations) and is dropped in t.Cleanup.
func NewDBAt(t testing.TB, version uint) (*sqlx.DB, string) {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("postgres", AdminURL())
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	defer admin.Close()
	name := fmt.Sprintf("bazaar_t_%d_%d_%d_v%d", os.Getpid(), time.Now().UnixNano()%1e6, counter.Add(1), version)
	if _, err := admin.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("postgres", AdminURL())
		if err != nil {
			t.Errorf("storetest: %v", err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			t.Errorf("storetest: drop database: %v", err)
		}
	})
	dsn := withDatabase(AdminURL(), name)
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	db.SetMaxOpenConns(MaxConns)
	t.Cleanup(func() { _ = db.Close() })
	if err := migrations.To(ctx, db.DB, version); err != nil {
		t.Fatalf("storetest: migrate to %d: %v", version, err)
	}
	return db, dsn
}

// ensureTemplate creates and migrates a template database named after a hash
// of the migrations, once per schema across all test processes.
func ensureTemplate(ctx context.Context) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS(), path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	name := "bazaar_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	admin, err := sql.Open("postgres", AdminURL())
	if err != nil {
		return "", err
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", redact(AdminURL()), err)
	}
	defer conn.Close()
	// Serialise template creation across concurrently running test binaries.
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		return "", err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(727274)`) //nolint:errcheck

	var ready bool
	err = conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&ready)
	if err != nil {
		return "", err
	}
	if ready {
		return name, nil
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s`, name)); err != nil {
		return "", err
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		return "", err
	}
	tdb, err := sql.Open("postgres", withDatabase(AdminURL(), name))
	if err != nil {
		return "", err
	}
	if err := migrations.Up(ctx, tdb); err != nil {
		_ = tdb.Close()
		return "", err
	}
	_ = tdb.Close()
	if _, err := conn.ExecContext(ctx, `UPDATE pg_database SET datistemplate = true WHERE datname = $1`, name); err != nil {
		return "", err
	}
	// Templates of other schemas are left alone: another test process may be
	// cloning one right now. Each is one small database named
	// bazaar_tmpl_<hash>; drop old ones by hand when they pile up.
	return name, nil
}

func withDatabase(dsn, name string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Path = "/" + name
	return u.String()
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "database"
	}
	return u.Redacted()
}
