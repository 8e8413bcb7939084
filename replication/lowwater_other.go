//go:build !linux

package replication

import "syscall"

// setLowWater is a no-op where SO_RCVLOWAT does not keep the socket from
// being reported readable (or is not known to); the reader then only waits.
func setLowWater(syscall.RawConn, int) bool { return false }
