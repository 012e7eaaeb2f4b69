package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	// AppendFsync, with Persist, sets appendfsync (always, everysec or no;
	// default always). With "no" Redis leaves flushing the file to the
	// kernel: a SIGKILL loses nothing, but a host crash loses what the
	// kernel had not yet written, which TruncateAOF plays.
	AppendFsync string
}

// Server is a redis-server of the test process's own on a free port of
// 127.0.0.1, so a test can stop and restart it without touching anyone
// else's data.
type Server struct {
	port int
	args []string
	dir  string

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
	s, err := startServer(dir, opt.AppendFsync)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// startServer starts a server on a free port, trying other ports when the
// one picked is taken before redis-server binds it. dir "" keeps nothing on
// disk.
func startServer(dir, fsync string) (*Server, error) {
	if fsync == "" {
		fsync = "always"
	}
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", ""}
		if dir != "" {
			// No automatic rewrite: the AOF stays one base and one
			// incremental file, whose tail TruncateAOF can cut.
			args = append(args, "--dir", dir, "--appendonly", "yes", "--appendfsync", fsync, "--auto-aof-rewrite-percentage", "0")
		} else {
			// A file name of this server's own: redis-server loads the
			// dump.rdb it finds in its directory at start, and the shared
			// temporary directory may hold another server's.
			args = append(args, "--dir", os.TempDir(), "--appendonly", "no",
				"--dbfilename", fmt.Sprintf("redistest-%d-%d.rdb", os.Getpid(), port))
		}
		s := &Server{port: port, args: args, dir: dir}
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

// incrAOF is the path of the append-only file Redis 7 appends commands to.
func (s *Server) incrAOF() (string, error) {
	if s.dir == "" {
		return "", errors.New("redistest: the server does not persist")
	}
	files, err := filepath.Glob(filepath.Join(s.dir, "appendonlydir", "*.incr.aof"))
	if err != nil {
		return "", err
	}
	if len(files) != 1 {
		return "", fmt.Errorf("redistest: want one incremental AOF file, found %d", len(files))
	}
	return files[0], nil
}

// AOFSize returns how many bytes of commands the server has written to its
// append-only file so far (flushed to the kernel or not).
func (s *Server) AOFSize() (int64, error) {
	p, err := s.incrAOF()
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// TruncateAOF cuts the stopped server's append-only file back to size, as
// a host crash does to the writes the kernel had not yet put on disk; the
// next Start loads only what is left. size should come from AOFSize, so
// the cut falls between two commands.
func (s *Server) TruncateAOF(size int64) error {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return errors.New("redistest: stop the server before truncating its AOF")
	}
	p, err := s.incrAOF()
	if err != nil {
		return err
	}
	return os.Truncate(p, size)
}
