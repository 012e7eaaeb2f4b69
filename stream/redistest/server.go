package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// Persist keeps the data across Stop and Start, in an append-only file
	// written and synced before each reply (appendfsync always), as a
	// restarted production Redis would. Without it a restart starts empty.
	Persist bool
}

// Server is a redis-server of the test process's own on a free port of
// 127.0.0.1, so a test can stop and restart it without touching anyone
// else's data.
type Server struct {
	port int
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartServer starts a redis-server for t and stops it in t.Cleanup.
func StartServer(t testing.TB, opt ServerOptions) *Server {
	t.Helper()
	dir := ""
	if opt.Persist {
		dir = t.TempDir()
	}
	s, err := startServer(dir)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// startServer starts a server on a free port, trying other ports when the
// one picked is taken before redis-server binds it. dir "" keeps nothing on
// disk.
func startServer(dir string) (*Server, error) {
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", ""}
		if dir != "" {
			args = append(args, "--dir", dir, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			// A file name of its own: redis-server loads the dump in its
			// directory at start, and the shared temporary directory may
			// hold another server's dump.rdb.
			args = append(args, "--dir", os.TempDir(), "--appendonly", "no",
				"--dbfilename", fmt.Sprintf("redistest-%d-%d.rdb", os.Getpid(), port))
		}
		s := &Server{port: port, args: args}
		if last = s.Start(); last == nil {
			return s, nil
		}
	}
	return nil, last
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

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Start starts the server again on its port after Stop, with its data when
// it persists; it returns once the server answers. Starting a running
// server does nothing.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	// Not CommandContext: the server outlives the call (Stop ends it).
	cmd := exec.CommandContext(context.Background(), "redis-server", s.args...) //nolint:gosec // fixed program, arguments of our own
	// The kernel kills the server when the test binary dies, even by
	// SIGKILL or a timeout, so no server outlives its tests.
	cmd.SysProcAttr = parentDeathSignal()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server (is it installed?): %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// No goroutine waits on the process: a server shared by a whole
		// test binary would outlive goleak's check.
		if exited(cmd.Process.Pid) {
			return fmt.Errorf("redis-server on port %d exited at start (port taken?)", s.port)
		}
		if c.Ping(context.Background()).Err() == nil {
			s.cmd = cmd
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("redis-server on port %d did not answer within 10s", s.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server at once, as a crash would; the data written so
// far survives when the server persists. Stopping twice does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
