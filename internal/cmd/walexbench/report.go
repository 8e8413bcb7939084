package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// collect is f of each sample.
func collect[S any](ss []S, f func(S) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// medianRate is a reader's median events/s in a workload.
func (r *workloadResult) medianRate(kind string) float64 {
	return median(collect(r.samples[kind], sample.rate))
}

// bestRaw is the raw reader with the highest median events/s.
func (r *workloadResult) bestRaw() (string, float64) {
	best, rate := "", 0.0
	for _, k := range r.readers {
		if isWalex(k) {
			continue
		}
		if m := r.medianRate(k); m > rate {
			best, rate = k, m
		}
	}
	return best, rate
}

func (r *workloadResult) print(w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n", r.w.name, r.desc)
	fmt.Fprintf(w, "    %s events per reader, written in %s (%s); %d run(s) per reader\n\n",
		thousands(r.events), r.write.Round(time.Millisecond), r.note, r.runs)
	fmt.Fprintf(w, "    %-8s %-13s %12s  %-25s %8s %9s %10s %11s", "reader", "protocol", "events/s", "(min … max)", "walex/", "peak RSS", "CPU s per", "first event")
	if r.hasStats {
		fmt.Fprintf(w, "  %s", "server spill / stream")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "    %-8s %-13s %12s  %-25s %8s %9s %10s %11s", "", "", "median", "", "best raw", "MB (max)", "M events", "(median)")
	if r.hasStats {
		fmt.Fprintf(w, "  %s", "MB (median)")
	}
	fmt.Fprintln(w)
	_, best := r.bestRaw()
	for _, k := range r.readers {
		ss := r.samples[k]
		if len(ss) == 0 {
			continue
		}
		rates := collect(ss, sample.rate)
		ratio := "—"
		if isWalex(k) && best > 0 {
			ratio = fmt.Sprintf("%.2f", median(rates)/best)
		}
		rss := slices.Max(collect(ss, func(s sample) float64 { return float64(s.maxRSS) / 1e6 }))
		cpu := median(collect(ss, func(s sample) float64 { return s.cpu.Seconds() / float64(s.res.Events) * 1e6 }))
		first := time.Duration(median(collect(ss, func(s sample) float64 { return float64(s.res.First) })))
		fmt.Fprintf(w, "    %-8s %-13s %12s  %-25s %8s %9.1f %10.2f %11s", k, ss[0].res.Proto, thousands(int64(median(rates))),
			"("+thousands(int64(slices.Min(rates)))+" … "+thousands(int64(slices.Max(rates)))+")",
			ratio, rss, cpu, fmtDur(first))
		if r.hasStats {
			fmt.Fprintf(w, "  %.0f / %.0f", median(collect(ss, func(s sample) float64 { return s.spillMB })),
				median(collect(ss, func(s sample) float64 { return s.streamMB })))
		}
		fmt.Fprintln(w)
	}
}

func printLatency(w io.Writer, lat []*latencyResult, o options) {
	fmt.Fprintf(w, "latency: commit → handler, %d single-row transactions/s for %s after a %s warm-up (synchronous_commit = on)\n\n",
		o.latencyRate, o.latencyDur, latencyWarmup)
	fmt.Fprintf(w, "    %-7s %-13s %8s %8s %9s %9s %9s %9s %8s %9s\n", "reader", "protocol", "tx", "tx/s", "p50", "p90", "p99", "max", "missing", "peak RSS")
	for _, l := range lat {
		fmt.Fprintf(w, "    %-7s %-13s %8d %8.0f %9s %9s %9s %9s %8d %6.1f MB\n", l.kind, l.proto, l.samples, l.rate,
			fmtDur(l.p50), fmtDur(l.p90), fmtDur(l.p99), fmtDur(l.max), l.missing, float64(l.maxRSS)/1e6)
	}
}

// printTargets checks the measurements against the project's performance targets (BENCHMARKS.md, "Targets").
func printTargets(w io.Writer, results []*workloadResult, snap *snapshotResult, lat []*latencyResult) {
	fmt.Fprintln(w, "targets (walex):")
	mark := func(ok bool) string {
		if ok {
			return "[x]"
		}
		return "[ ]"
	}
	for _, r := range results {
		best, rate := r.bestRaw()
		if len(r.samples[kindWalex]) == 0 || rate == 0 {
			continue
		}
		ratio := r.medianRate(kindWalex) / rate
		fmt.Fprintf(w, "  %s %s walex/best raw events/s >= 1.0 (median of %d): %.2f (best raw: %s)\n", mark(ratio >= 1), r.w.name, r.runs, ratio, best)
	}
	for _, r := range results {
		ss := r.samples[kindWalex]
		if r.w.name != "W1" || len(ss) == 0 {
			continue
		}
		rss := slices.Max(collect(ss, func(s sample) float64 { return float64(s.maxRSS) / 1e6 }))
		fmt.Fprintf(w, "  %s W1 peak RSS < 100 MB (%s): %.1f MB\n", mark(rss < 100), ss[0].res.Proto, rss)
		cpu := median(collect(ss, func(s sample) float64 { return s.cpu.Seconds() / float64(s.res.Events) * 1e6 }))
		fmt.Fprintf(w, "  %s W1 client CPU <= 4 s per million events: %.2f s\n", mark(cpu <= 4), cpu)
	}
	if snap != nil && len(snap.walex[defaultSnapChunk]) > 0 && len(snap.copy) > 0 {
		ratio, rss := snap.ratio(defaultSnapChunk), peakRSS(snap.walex[defaultSnapChunk])
		fmt.Fprintf(w, "  %s snapshot ≤ 1.5× COPY floor, < 100 MB RSS (chunk %d, median of %d): %.2f× COPY (%s against %s), %.1f MB\n",
			mark(ratio <= 1.5 && rss < 100), defaultSnapChunk, len(snap.walex[defaultSnapChunk]), ratio,
			fmtDur(medianTime(snap.walex[defaultSnapChunk])), fmtDur(medianTime(snap.copy)), rss)
	}
	for _, l := range lat {
		if l.kind != kindWalex {
			continue
		}
		fmt.Fprintf(w, "  %s commit → handler p99 < 20 ms at %.0f tx/s: %s\n", mark(l.p99 < 20*time.Millisecond), l.rate, fmtDur(l.p99))
	}
	fmt.Fprintln(w, "  decoder >= 1,000,000 events/s on one core, <= 12 allocs/event: see the decoder benchmarks")
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

// thousands formats n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
