package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex/internal/benchload"
)

// machineInfo describes the machine, Go, PostgreSQL and its settings. It
// names no host and no path.
func (b *bench) machineInfo(ctx context.Context) (string, error) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "walexbench  %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&sb, "machine     %d CPUs (%s), %s memory, %s %s\n", runtime.NumCPU(), cpuModel(), memTotal(), runtime.GOOS, kernel())
	fmt.Fprintf(&sb, "load        %s (1, 5, 15 min load average at the start)\n", loadAvg())
	fmt.Fprintf(&sb, "go          %s %s/%s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))

	conn, err := pgx.Connect(ctx, b.srv.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "", err
	}
	fmt.Fprintf(&sb, "postgresql  %s (throwaway server from internal/pgtest, same machine, over 127.0.0.1)\n", version)
	var settings []string
	for _, name := range []string{"logical_decoding_work_mem", "shared_buffers", "synchronous_commit", "fsync", "wal_sender_timeout"} {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			continue // logical_decoding_work_mem is new in 13
		}
		settings = append(settings, name+"="+v)
	}
	fmt.Fprintf(&sb, "settings    %s\n", strings.Join(settings, " "))
	if slices.Contains(b.o.workloads, "W2") {
		if p, err := benchload.FindPgbench(b.srv); err == nil {
			out, _ := exec.CommandContext(ctx, p, "--version").Output()
			fmt.Fprintf(&sb, "pgbench     %s\n", strings.TrimSpace(string(out)))
		}
	}
	chunks := make([]string, len(b.o.snapshotChunks))
	for i, n := range b.o.snapshotChunks {
		chunks[i] = strconv.Itoa(n)
	}
	fmt.Fprintf(&sb, "options     -workloads %s -readers %s -runs %d -scale %g -latency-readers %s -latency-rate %d -latency-duration %s -snapshot-chunks %s",
		strings.Join(b.o.workloads, ","), strings.Join(b.o.readers, ","), b.o.runs, b.o.scale,
		strings.Join(b.o.latencyReaders, ","), b.o.latencyRate, b.o.latencyDur, strings.Join(chunks, ","))
	return sb.String(), nil
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	return "unknown"
}

func kernel() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// loadAvg is the 1, 5 and 15 minute load average: other work on the
// machine disturbs the measurements.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
