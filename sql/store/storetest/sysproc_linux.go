package storetest

import "syscall"

// parentDeathSignal ends a helper process when the test binary dies, even
// by SIGKILL or a timeout.
func parentDeathSignal() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// exited reaps the child pid if it has exited, without waiting.
func exited(pid int) bool {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return err == nil && got == pid
}
