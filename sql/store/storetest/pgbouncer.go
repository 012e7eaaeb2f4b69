package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// Pool says how a test's pool reaches PostgreSQL.
type Pool int

const (
	// Direct connects to the server at TEST_DATABASE_URL.
	Direct Pool = iota
	// PgBouncer connects through a PgBouncer in transaction pooling mode,
	// as a deployment behind PgBouncer does: every transaction may run on
	// another server connection, so nothing may rely on session state.
	PgBouncer
)

// Pools are both ways, for tests that run once per way.
var Pools = []Pool{Direct, PgBouncer}

func (p Pool) String() string {
	if p == PgBouncer {
		return "pgbouncer"
	}
	return "direct"
}

// NewDBVia is NewDB with the pool reaching the new database the way p
// says. It returns the pool's URL and the direct URL, for what needs a
// session of its own (migrations, session advisory locks).
func NewDBVia(t testing.TB, p Pool) (db *sqlx.DB, dsn, direct string) {
	t.Helper()
	pool, direct := NewDB(t)
	if p == Direct {
		return pool, direct, direct
	}
	dsn, err := throughBouncer(direct)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	db, err = sqlx.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	db.SetMaxOpenConns(MaxConns)
	// Closed before NewDB's cleanup drops the database (cleanups run last
	// in, first out).
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("storetest: through pgbouncer: %v", err)
	}
	return db, dsn, direct
}

// PgBouncerAdminURL is the URL of the test PgBouncer's admin console (the
// "pgbouncer" database, simple queries only: SHOW POOLS), starting it if
// needed.
func PgBouncerAdminURL(t testing.TB) string {
	t.Helper()
	u, err := throughBouncer(withDatabase(AdminURL(), "pgbouncer"))
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return u
}

var (
	bouncerOnce sync.Once
	bouncerAddr string
	bouncerErr  error
)

// throughBouncer rewrites a direct URL of the test server to go through
// the test binary's PgBouncer, started at first use.
func throughBouncer(direct string) (string, error) {
	bouncerOnce.Do(func() { bouncerAddr, bouncerErr = startBouncer(AdminURL()) })
	if bouncerErr != nil {
		return "", bouncerErr
	}
	u, err := url.Parse(direct)
	if err != nil {
		return "", err
	}
	u.Host = bouncerAddr
	q := u.Query()
	q.Set("binary_parameters", "yes")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// startBouncer starts Debian's pgbouncer in front of the server of admin,
// on a free port of 127.0.0.1, in transaction pooling mode with trust
// authentication (as the test server has), once per test binary. It runs
// until the test binary exits (the kernel ends it then).
func startBouncer(admin string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	name := u.User.Username()
	if name == "" {
		name = "postgres"
	}
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
			return "", errors.New("pgbouncer is not installed (apt-get install pgbouncer, or make tools)")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	// Not t.TempDir: the bouncer outlives the test that started it.
	dir, err := os.MkdirTemp("", "storetest-pgbouncer-")
	if err != nil {
		return "", err
	}
	var last error
	for range 5 {
		addr, err := tryBouncer(bin, dir, host, port, name)
		if err == nil {
			return addr, nil
		}
		last = err
	}
	return "", last
}

func tryBouncer(bin, dir, host, port, name string) (string, error) {
	lp, err := freePort()
	if err != nil {
		return "", err
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits
admin_users = %s
`, host, port, lp, filepath.Join(dir, "users.txt"), name)
	// World-readable: as root, pgbouncer switches to an unprivileged user
	// (it refuses to run as root) and reads its files after that.
	if err := os.Chmod(dir, 0o755); err != nil { //nolint:gosec // test configuration, no secret
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(strconv.Quote(name)+` ""`+"\n"), 0o644); err != nil { //nolint:gosec // see above
		return "", err
	}
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil { //nolint:gosec // see above
		return "", err
	}
	args := []string{iniPath}
	attr := parentDeathSignal()
	if os.Geteuid() == 0 {
		// pgbouncer refuses to run as root.
		switched, err := runAs(attr, unprivilegedUser())
		if err != nil {
			return "", err
		}
		if !switched {
			args = append([]string{"-u", unprivilegedUser()}, args...)
		}
	}
	// Not CommandContext's cancellation: the bouncer outlives the call.
	cmd := exec.CommandContext(context.Background(), bin, args...) //nolint:gosec // the installed pgbouncer, arguments of our own
	// A file, not a buffer: a buffer needs a copying goroutine, which would
	// outlive the tests and goleak's check.
	logPath := filepath.Join(dir, "pgbouncer.log")
	logFile, err := os.Create(logPath) //nolint:gosec // a path of our own
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start pgbouncer: %w", err)
	}
	stderr := func() []byte { b, _ := os.ReadFile(logPath); return b } //nolint:gosec // see above
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lp))
	dsn := (&url.URL{Scheme: "postgres", User: url.User(name), Host: addr, Path: "/postgres", RawQuery: "sslmode=disable"}).String()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		_ = cmd.Process.Kill()
		return "", err
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if exited(cmd.Process.Pid) {
			return "", fmt.Errorf("pgbouncer exited at start: %s", bytes.TrimSpace(stderr()))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return addr, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return "", fmt.Errorf("pgbouncer did not answer within 10s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unprivilegedUser is who pgbouncer runs as when the tests run as root.
func unprivilegedUser() string {
	for _, name := range []string{"postgres", "nobody"} {
		if _, err := user.Lookup(name); err == nil {
			return name
		}
	}
	return "nobody"
}

func freePort() (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}
