//go:build !linux

package redistest

import "syscall"

// Elsewhere the kernel offers no parent-death signal: a server left by a
// killed test binary keeps running until stopped by hand (it holds only
// test data, on a port of its own).
func parentDeathSignal() *syscall.SysProcAttr { return nil }

// exited cannot tell without waiting here; a server that failed to start
// is noticed when it does not answer.
func exited(int) bool { return false }
