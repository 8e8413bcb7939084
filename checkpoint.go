package walex

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/walex-go/walex/internal/sqlquote"
)

// Position is a place in the change stream: the commit LSN of a
// transaction and the Index of an event in it, the two parts of
// Event.ID. Positions increase in delivery order.
type Position struct {
	CommitLSN LSN `json:"lsn"`
	Index     int `json:"index"`
}

// PositionOf returns the position of an event.
func PositionOf(e Event) Position { return Position{CommitLSN: e.CommitLSN, Index: e.Index} }

// After reports whether p comes after q in the stream.
func (p Position) After(q Position) bool {
	return p.CommitLSN > q.CommitLSN || (p.CommitLSN == q.CommitLSN && p.Index > q.Index)
}

// String returns the position as an Event.ID: "<commit LSN>:<index>".
func (p Position) String() string { return fmt.Sprintf("%s:%d", p.CommitLSN, p.Index) }

// TxHandler handles events inside a transaction of the application's own
// database; see OnTx.
type TxHandler func(ctx context.Context, tx pgx.Tx, events []Event) error

// Checkpointer keeps the positions of transactional handlers in the
// application's database, inside the transactions that apply their
// events. PostgresCheckpointer is the implementation for PostgreSQL.
type Checkpointer interface {
	// Begin begins a transaction in the database the handlers write to.
	Begin(ctx context.Context) (pgx.Tx, error)
	// Load returns the position stored under key, reading it in tx (and
	// locking it until tx ends); ok is false when none is stored.
	Load(ctx context.Context, tx pgx.Tx, key string) (pos Position, ok bool, err error)
	// Store stores pos under key in tx.
	Store(ctx context.Context, tx pgx.Tx, key string, pos Position) error
}

// OnTx registers h for every event of table (or, with AllTables, of every
// subscribed table), applied exactly once to the application's own
// database through cp.
//
// For each call walex begins a transaction with cp, reads the handler's
// stored position in it, drops the events at or before that position,
// calls h with the transaction and the rest, stores the position of the
// last event in the same transaction and commits. h must do all its work
// through tx, and must not commit or roll it back. When h fails, the
// transaction is rolled back and the call retried (Config.RetryPolicy)
// with a new one. Because the position commits with the changes, a crash
// at any point, a reconnect or a commit whose outcome the connection did
// not report never applies an event twice: on every start and after every
// reconnect walex reads the position first and skips, before h or any
// middleware sees them, the events the database already has. (Other
// handlers keep their own at-least-once delivery: they get every event.)
// Together with a durable slot (Config.DurableSlot), which delivers again
// whatever was not acknowledged, every event is applied exactly once.
// With a temporary slot, changes made while disconnected are lost as
// ever.
//
// The position is stored under the key "<source database>/<slot
// name>/<registration name>" (several sources and slots can share one
// checkpoint table):
// name the registration with WithName so that the key survives changes of
// the code (the default name is the function's, which changes when it is
// a closure that moves). The events of a transaction larger than
// Config.MaxBatchEvents come in several calls; each stores its own
// position, so a crash in the middle resumes in the middle. Snapshot rows
// (Read events) have positions too: a chunk applied is not applied again
// by this handler; a chunk read again after a crash (one that was
// delivered but not yet acknowledged) carries new positions and the rows
// as they are then, so apply Reads as upserts.
//
// Filters (WithFilters) and names (WithName) apply; WithFunctions does
// not (functions cannot be part of the transaction) and makes OnTx panic,
// as do a nil cp or h and an invalid table name.
func (c *Client) OnTx(table string, cp Checkpointer, h TxHandler, opts ...Option) {
	if cp == nil {
		panic(fmt.Sprintf("walex: OnTx(%q): nil Checkpointer", table))
	}
	if h == nil {
		panic(fmt.Sprintf("walex: OnTx(%q): nil handler", table))
	}
	opts = append(opts, optionFunc(func(r *registration) {
		if len(r.functions) > 0 {
			panic(fmt.Sprintf("walex: OnTx(%q): WithFunctions does not apply to a transactional handler", table))
		}
		r.cp, r.txh = cp, h
		if r.name == "" {
			r.name = funcName(h)
		}
	}))
	// The Handler is never called: txHandler replaces it per call.
	c.register("OnTx", table, nil, func(context.Context, []Event) error {
		return errors.New("walex: OnTx handler called without its transaction")
	}, opts)
}

// checkpointKey is the key of r's position.
func (r *registration) checkpointKey(cfg *validated) string {
	return cfg.conn.Database + "/" + cfg.SlotName + "/" + r.name
}

// position returns r's stored position, loading it on first use in the
// connection.
func (f *flow) position(ctx context.Context, cfg *validated, r *registration) (Position, bool, error) {
	if p, ok := f.positions[r]; ok {
		return p.pos, p.ok, nil
	}
	tx, err := r.cp.Begin(ctx)
	if err != nil {
		return Position{}, false, fmt.Errorf("walex: %s: begin a transaction to read the stored position: %w", r, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	pos, ok, err := r.cp.Load(ctx, tx, r.checkpointKey(cfg))
	if err != nil {
		return Position{}, false, fmt.Errorf("walex: %s: read the stored position: %w", r, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Position{}, false, fmt.Errorf("walex: %s: read the stored position: %w", r, err)
	}
	f.positions[r] = storedPos{pos, ok}
	return pos, ok, nil
}

// storedPos is a loaded position; ok is false when none was stored.
type storedPos struct {
	pos Position
	ok  bool
}

// txHandler returns the Handler that runs one call of the transactional
// registration r.
func (r *registration) txHandler(f *flow, cfg *validated) Handler {
	key := r.checkpointKey(cfg)
	return func(ctx context.Context, events []Event) error {
		tx, err := r.cp.Begin(ctx)
		if err != nil {
			return fmt.Errorf("walex: begin a transaction: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		// Read in every transaction, not only after a failed commit: the
		// row lock also orders this transaction after one that another
		// process (the instance this one took the slot over from) may still
		// be committing.
		pos, ok, err := r.cp.Load(ctx, tx, key)
		if err != nil {
			return fmt.Errorf("walex: read the stored position: %w", err)
		}
		if ok {
			// A commit that failed as far as the client could tell may
			// have happened: what it applied is not applied again.
			i := 0
			for i < len(events) && !PositionOf(events[i]).After(pos) {
				i++
			}
			events = events[i:]
		}
		if len(events) > 0 {
			if err := r.txh(ctx, tx, events); err != nil {
				return err
			}
			pos, ok = PositionOf(events[len(events)-1]), true
			if err := r.cp.Store(ctx, tx, key, pos); err != nil {
				return fmt.Errorf("walex: store the position %s: %w", pos, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("walex: commit: %w", err)
		}
		f.positions[r] = storedPos{pos, ok}
		return nil
	}
}

// DefaultCheckpointTable is the table of PostgresCheckpointer when none
// is named.
const DefaultCheckpointTable = "public.walex_checkpoints"

// PostgresCheckpointer is a Checkpointer that keeps positions in a table
// of a PostgreSQL database reached through a pgxpool.Pool: one row per
// key, created with the table if missing.
type PostgresCheckpointer struct {
	pool  *pgxpool.Pool
	table tableName

	mu    sync.Mutex
	ready bool
}

// NewPostgresCheckpointer returns a Checkpointer on pool that keeps
// positions in table ("schema.table" or "table"; "" for
// DefaultCheckpointTable). The table is created on first use if it does
// not exist, which needs the CREATE privilege on its schema; otherwise
// the role needs SELECT, INSERT and UPDATE on it.
func NewPostgresCheckpointer(pool *pgxpool.Pool, table string) (*PostgresCheckpointer, error) {
	if pool == nil {
		return nil, &ConfigError{Field: "Checkpointer", Reason: "nil pool"}
	}
	if table == "" {
		table = DefaultCheckpointTable
	}
	t, err := parseTableName(table)
	if err != nil {
		return nil, &ConfigError{Field: "Checkpointer", Reason: fmt.Sprintf("table %q: %v", table, err)}
	}
	return &PostgresCheckpointer{pool: pool, table: t}, nil
}

// Begin begins a transaction on the pool.
func (p *PostgresCheckpointer) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	return p.pool.Begin(ctx)
}

// ensure creates the table if it does not exist, once.
func (p *PostgresCheckpointer) ensure(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return nil
	}
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, p.table.quoted()).Scan(&exists); err != nil {
		return fmt.Errorf("walex: checkpoint table %s: %w", p.table, err)
	}
	if !exists {
		_, err := p.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+p.table.quoted()+` (
	key text PRIMARY KEY,
	commit_lsn pg_lsn NOT NULL,
	index integer NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
)`)
		if err != nil {
			return fmt.Errorf("walex: cannot create the checkpoint table %s (create it, or GRANT CREATE ON SCHEMA %s to the role): %w", p.table, sqlquote.Ident(p.table.Schema), err)
		}
	}
	p.ready = true
	return nil
}

// Load reads the position stored under key in tx, locking its row.
func (p *PostgresCheckpointer) Load(ctx context.Context, tx pgx.Tx, key string) (Position, bool, error) {
	var lsn string
	var idx int
	err := tx.QueryRow(ctx, `SELECT commit_lsn::text, index FROM `+p.table.quoted()+` WHERE key = $1 FOR UPDATE`, key).Scan(&lsn, &idx)
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("walex: checkpoint table %s: %w", p.table, err)
	}
	l, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		return Position{}, false, fmt.Errorf("walex: checkpoint table %s: key %q: %w", p.table, key, err)
	}
	return Position{CommitLSN: l, Index: idx}, true, nil
}

// Store stores pos under key in tx.
func (p *PostgresCheckpointer) Store(ctx context.Context, tx pgx.Tx, key string, pos Position) error {
	_, err := tx.Exec(ctx, `INSERT INTO `+p.table.quoted()+` AS c (key, commit_lsn, index) VALUES ($1, $2::pg_lsn, $3)
ON CONFLICT (key) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, index = EXCLUDED.index, updated_at = now()`, key, pos.CommitLSN.String(), pos.Index)
	if err != nil {
		return fmt.Errorf("walex: checkpoint table %s: %w", p.table, err)
	}
	return nil
}
