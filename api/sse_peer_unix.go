//go:build unix

package api

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the client closed its end of conn, without
// waiting: a peek that finds the end of the stream (or an error other than
// "nothing to read") means it is gone. A raw stream has no reader
// goroutine to notice it otherwise before a write fails.
func peerClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
		return true
	})
	return closed || err != nil
}
