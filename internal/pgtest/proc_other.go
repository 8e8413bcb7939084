//go:build !linux

package pgtest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig does nothing where there is no parent-death signal; the
// sentinel process still cleans up.
func setPdeathsig(cmd *exec.Cmd, sig syscall.Signal) {}
