package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// runAs describes the operating-system user that initdb and postgres run as.
// A nil *runAs means "the current user".
type runAs struct {
	name string
	uid  uint32
	gid  uint32
}

// serverUser returns the user to run PostgreSQL as: nil unless the process
// is root, in which case it is the "postgres" user.
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses to run as root, "+
			"but there is no \"postgres\" user to run it as (%v); install PostgreSQL "+
			"(apt-get install -y postgresql), which creates that user, or run the tests as a non-root user", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: bad uid %q for user postgres", u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: bad gid %q for user postgres", u.Gid)
	}
	return &runAs{name: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// apply sets the credentials of cmd so that it runs as r.
func (r *runAs) apply(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if r == nil {
		return
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.uid, Gid: r.gid, Groups: []uint32{}}
}

// chown gives path to r (no-op for the current user).
func (r *runAs) chown(path string) error {
	if r == nil {
		return nil
	}
	return os.Chown(path, int(r.uid), int(r.gid))
}

// tempBase returns the directory to create server directories in. When
// PostgreSQL runs as another user, every ancestor of the directory must be
// searchable by others; os.TempDir() is used if it is, /tmp otherwise.
func tempBase(as *runAs) string {
	base := os.TempDir()
	if as == nil || worldSearchable(base) {
		return base
	}
	return "/tmp"
}

// worldSearchable reports whether dir and all its ancestors have the
// "others may search" permission bit.
func worldSearchable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// The parent-death signal (Pdeathsig) is delivered when the *thread* that
// started the child exits, not the process. Go may retire OS threads, so all
// children that use it are started from one goroutine locked to a thread that
// never exits.
var (
	forkerOnce sync.Once
	forkerCh   chan func()
)

// startLocked runs cmd.Start on the dedicated, never-exiting thread.
func startLocked(cmd *exec.Cmd) error {
	forkerOnce.Do(func() {
		forkerCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range forkerCh {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	forkerCh <- func() { errc <- cmd.Start() }
	return <-errc
}

// sentinelScript is run by /bin/sh with the server directory as $1. It reads
// commands from stdin, a pipe whose write end only the test process holds:
//
//	pid N   the postmaster (and process group) to kill is N; "pid" alone clears it
//	done    orderly shutdown happened, exit without doing anything
//
// End of input without "done" means the test process is gone (it exited,
// panicked or was killed): kill the server's process group and remove the
// directory.
const sentinelScript = `
trap '' INT HUP TERM PIPE
dir="$1"
pid=""
while IFS= read -r line; do
	case "$line" in
	done) exit 0 ;;
	pid) pid="" ;;
	"pid "*) pid="${line#pid }" ;;
	esac
done
if [ -n "$pid" ]; then
	kill -s QUIT -- "-$pid" 2>/dev/null
	# Wait for the postmaster to exit; it takes its backends with it. Once
	# the test process is gone nobody may reap it, so a zombie counts as gone.
	i=0
	while [ "$i" -lt 50 ]; do
		st=$(cat "/proc/$pid/stat" 2>/dev/null) || break
		set -- ${st##*)}
		case "$1" in Z | X) break ;; esac
		sleep 0.1
		i=$((i + 1))
	done
	kill -s KILL -- "-$pid" 2>/dev/null && sleep 0.2
fi
rm -rf -- "$dir"
`

// sentinel is the reaper process guarding one server directory.
type sentinel struct {
	mu  sync.Mutex
	cmd *exec.Cmd
	w   *os.File // write end of the sentinel's stdin; nil once closed
}

// startSentinel starts a reaper for dir. It runs in its own process group so
// that signals aimed at the test's process group (such as ^C) do not reach it.
func startSentinel(dir string) (*sentinel, error) {
	r, w, err := os.Pipe() // both ends close-on-exec: no other child inherits w
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", sentinelScript, "pgtest-sentinel", dir)
	cmd.Stdin = r
	// Stdout and Stderr stay nil (/dev/null): holding the test's output pipe
	// open would make "go test" wait for the sentinel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("pgtest: start cleanup sentinel: %w", err)
	}
	r.Close()
	return &sentinel{cmd: cmd, w: w}, nil
}

// send writes one command line to the sentinel. Errors are ignored: a dead
// sentinel cannot be helped, and the orderly path does not depend on it.
func (s *sentinel) send(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		_, _ = s.w.WriteString(line + "\n")
	}
}

// watch tells the sentinel which process group to kill if the test dies.
func (s *sentinel) watch(pid int) {
	if pid > 0 {
		s.send("pid " + strconv.Itoa(pid))
	} else {
		s.send("pid")
	}
}

// dismiss closes the sentinel's input and reaps it. With clean (the caller
// already stopped the server and removed its files) the sentinel exits
// without doing anything; otherwise it kills and removes what is left.
func (s *sentinel) dismiss(clean bool) {
	if clean {
		s.send("done")
	}
	s.mu.Lock()
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
	s.mu.Unlock()
	_ = s.cmd.Wait()
}

// missingLibs runs ldd on the given binaries and returns a description of
// the shared libraries that cannot be found ("" if none or ldd is missing).
func missingLibs(bins ...string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, bin := range bins {
		out, _ := exec.Command("ldd", bin).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			line = fmt.Sprintf("%s: %s", filepath.Base(bin), strings.TrimSpace(line))
			if strings.Contains(line, "not found") && !seen[line] {
				seen[line] = true
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}
