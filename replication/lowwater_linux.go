package replication

import "syscall"

// setLowWater sets the socket's SO_RCVLOWAT and reports whether it could.
func setLowWater(sock syscall.RawConn, n int) bool {
	var serr error
	err := sock.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	})
	return err == nil && serr == nil
}
