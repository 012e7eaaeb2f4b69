//go:build !linux

package storetest

import "syscall"

// Elsewhere the kernel offers no parent-death signal: a helper left by a
// killed test binary keeps running until stopped by hand.
func parentDeathSignal() *syscall.SysProcAttr { return nil }

// exited cannot tell without waiting here; a helper that failed to start
// is noticed when it does not answer.
func exited(int) bool { return false }

// runAs leaves the switch of user to the helper itself (pgbouncer -u).
func runAs(*syscall.SysProcAttr, string) (bool, error) { return false, nil }
