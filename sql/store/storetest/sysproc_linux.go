package storetest

import (
	"fmt"
	"os/user"
	"strconv"
	"syscall"
)

// parentDeathSignal ends a helper process when the test binary dies, even
// by SIGKILL or a timeout.
func parentDeathSignal() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// runAs makes attr start its process as the named user. The switch is
// made before exec, where Go sets the parent-death signal after it: the
// kernel clears that signal when a process changes its own credentials,
// so a helper that dropped root itself (pgbouncer -u) outlived every
// test binary that started it.
func runAs(attr *syscall.SysProcAttr, name string) (bool, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return false, fmt.Errorf("user %s: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return false, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return false, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	return true, nil
}

// exited reaps the child pid if it has exited, without waiting.
func exited(pid int) bool {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return err == nil && got == pid
}
