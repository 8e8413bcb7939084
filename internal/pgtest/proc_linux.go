package pgtest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel send sig to cmd's process when the thread
// that started it exits (see startLocked).
func setPdeathsig(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
}
