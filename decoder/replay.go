package decoder

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
)

// A large streamed transaction is decoded only at its Stream Commit, from
// its spool, when the server has nothing more to send for it: the replay
// is where the client, not the walsender, sets the pace. So its row changes
// are decoded by several goroutines, in jobs of replayJobChanges, and
// emitted in order by the decoding goroutine, which meanwhile reads the
// spool and applies Relation and Type messages in stream order. Each
// worker has its own values (pgx's type map and the planned scans are not
// safe for concurrent use). At most workers+1 jobs are in flight, so the
// memory of a replay stays bounded.

const (
	// replayJobChanges is the number of row changes per job.
	replayJobChanges = 1024
	// replayMinEntries is the smallest spool replayed in parallel.
	replayMinEntries = 4 * replayJobChanges
	// maxReplayWorkers caps the default number of workers.
	maxReplayWorkers = 4
)

// replayWorkers is the number of goroutines that decode a replay.
func (d *Decoder) replayWorkers() int {
	if d.opts.ReplayWorkers > 0 {
		return d.opts.ReplayWorkers
	}
	return min(runtime.GOMAXPROCS(0), maxReplayWorkers)
}

// replayJob is a run of consecutive row changes of one transaction.
type replayJob struct {
	buf   []byte // the messages, one after another
	items []replayItem
	out   []Change
	err   error
	done  chan struct{}
}

// replayItem is one row change: a message in buf to decode, or (end < 0)
// a change that needs no decoding (a truncate), or (mark set) a mark.
type replayItem struct {
	off, end int
	rel      *Relation
	idx      int
	pre      Change
	mark     *Mark
}

// replayer runs one parallel replay.
type replayer struct {
	d       *Decoder
	emit    Emit
	jobs    chan *replayJob
	pending []*replayJob // submitted and not yet emitted, in order
	cur     *replayJob   // being filled
	free    []*replayJob // emitted jobs, for reuse
	jobSize int          // row changes per job
	limit   int
	wg      sync.WaitGroup
	closed  bool
}

func (d *Decoder) startReplay(ctx context.Context, emit Emit, workers int) *replayer {
	d.parallelReplays++
	r := &replayer{d: d, emit: emit, jobs: make(chan *replayJob, workers), jobSize: d.replayJob, limit: workers + 1}
	for range workers {
		r.wg.Add(1)
		go r.work(ctx, rows{vals: pgvalue.NewValues(d.textOf()), own: make(map[*Relation][]pgvalue.Codec)})
	}
	return r
}

func (r *replayer) work(ctx context.Context, rs rows) {
	defer r.wg.Done()
	var p pgoutput.Parser
	for j := range r.jobs {
		for _, it := range j.items {
			if it.end < 0 {
				j.out = append(j.out, it.pre) // a placeholder for a mark too
				continue
			}
			m, err := p.Parse(j.buf[it.off:it.end], true)
			if err != nil {
				j.err = err
				break
			}
			j.out = append(j.out, Change{Relation: it.rel, Index: it.idx})
			if err := rs.fill(ctx, m, it.rel, &j.out[len(j.out)-1]); err != nil {
				j.err = err
				break
			}
		}
		close(j.done)
	}
}

// add queues the row change msg (an insert, update or delete) of rel.
func (r *replayer) add(msg []byte, rel *Relation, idx int) error {
	j := r.job()
	off := len(j.buf)
	j.buf = append(j.buf, msg...)
	j.items = append(j.items, replayItem{off: off, end: len(j.buf), rel: rel, idx: idx})
	return r.maybeSubmit()
}

// addMark queues a mark.
func (r *replayer) addMark(m Mark) error {
	j := r.job()
	j.items = append(j.items, replayItem{end: -1, mark: &m})
	return r.maybeSubmit()
}

// addDecoded queues a change that needs no decoding.
func (r *replayer) addDecoded(c Change) error {
	j := r.job()
	j.items = append(j.items, replayItem{end: -1, pre: c})
	return r.maybeSubmit()
}

func (r *replayer) job() *replayJob {
	if r.cur == nil {
		if n := len(r.free); n > 0 {
			j := r.free[n-1]
			r.free = r.free[:n-1]
			j.buf, j.items, j.out, j.err, j.done = j.buf[:0], j.items[:0], j.out[:0], nil, make(chan struct{})
			r.cur = j
		} else {
			r.cur = &replayJob{
				buf:   make([]byte, 0, 256*r.jobSize),
				items: make([]replayItem, 0, r.jobSize),
				out:   make([]Change, 0, r.jobSize),
				done:  make(chan struct{}),
			}
		}
	}
	return r.cur
}

func (r *replayer) maybeSubmit() error {
	if len(r.cur.items) < r.jobSize {
		return nil
	}
	return r.submit()
}

// submit hands the current job to the workers, and emits the oldest one
// when the in-flight limit is reached.
func (r *replayer) submit() error {
	if r.cur == nil {
		return nil
	}
	r.jobs <- r.cur
	r.pending = append(r.pending, r.cur)
	r.cur = nil
	if len(r.pending) >= r.limit {
		return r.emitOldest()
	}
	return nil
}

func (r *replayer) emitOldest() error {
	j := r.pending[0]
	r.pending = r.pending[1:]
	<-j.done
	if j.err != nil {
		return j.err
	}
	for i := range j.out {
		var err error
		if m := j.items[i].mark; m != nil {
			err = r.d.appendMark(r.emit, *m)
		} else {
			err = r.d.appendChange(r.emit, j.out[i])
		}
		if err != nil {
			return err
		}
	}
	// The changes were copied into batches; the job's memory is reused.
	clear(j.out)
	clear(j.items)
	r.free = append(r.free, j)
	return nil
}

// finish emits everything queued, in order, and stops the workers.
func (r *replayer) finish() error {
	defer r.stop()
	if err := r.submit(); err != nil {
		return err
	}
	for len(r.pending) > 0 {
		if err := r.emitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops the workers (after the jobs they have) and waits for them.
func (r *replayer) stop() {
	if !r.closed {
		r.closed = true
		close(r.jobs)
		r.wg.Wait()
	}
}

// replayChange queues the spooled row change msg of the transaction being
// replayed (d.tx), as d.change would decode it.
func (d *Decoder) replayChange(r *replayer, msg []byte) error {
	// A streamed insert, update or delete: type, xid, relation ID, ...
	// (the rest is parsed by the worker).
	if len(msg) < 9 {
		return &pgoutput.ParseError{Type: pgoutput.MessageType(msg[0]), Offset: 5, Field: "relation", Reason: "message too short"}
	}
	rel, idx, wanted, err := d.claim(binary.BigEndian.Uint32(msg[5:]))
	if err != nil || !wanted {
		return err
	}
	return r.add(msg, rel, idx)
}
