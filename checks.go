package walex

import (
	"context"
	"fmt"
	"strings"

	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/internal/sqlquote"
	"github.com/walex-go/walex/replication"
)

// checkTables runs the start-up checks of a session on the subscribed
// tables and the publication:
//
//   - the publication exists (or Config.CreatePublication creates it);
//   - every subscribed table exists and is published (or
//     Config.CreatePublication adds it);
//   - the publication publishes the operations handlers are registered for
//     (a warning otherwise);
//   - UnwatchedFields filters can judge their table (a warning otherwise).
//
// At the first start of Run, a missing or unpublished table is a permanent
// error (ErrTableNotFound, ErrNotPublished): the configuration is wrong.
// After Run has streamed, the same finding is a warning naming the table,
// and delivery goes on for the others: a table dropped (or taken out of the
// publication) while Run runs must not stop the rest, and a table created
// again under the same name is picked up again.
func (s *session) checkTables() error {
	c, cfg, cat := s.c, s.cfg, s.cat
	subs := c.subscribed()
	pub, err := cat.publication(s.ctx, cfg.Publication)
	if err != nil {
		return err
	}
	if !pub.exists && !cfg.CreatePublication {
		return &replication.PermanentError{Err: fmt.Errorf("walex: %q: %w", cfg.Publication, ErrPublicationNotFound)}
	}
	states, err := cat.tables(s.ctx, cfg.Publication, subs)
	if err != nil {
		return err
	}
	missing, unpublished := sortOut(subs, states)
	if len(missing) > 0 && s.initial {
		return fmt.Errorf("%w: %s in database %q; create it or remove it from Config.Subscriptions", ErrTableNotFound, joinTables(missing), cfg.conn.Database)
	}
	c.noteMissing(subs, missing)
	if cfg.CreatePublication && (!pub.exists || len(unpublished) > 0) {
		if err := cat.ensurePublication(s.ctx, cfg.Publication, existing(subs, states)); err != nil {
			return err
		}
		if pub, err = cat.publication(s.ctx, cfg.Publication); err != nil {
			return err
		}
		unpublished = nil
	}
	if len(unpublished) > 0 {
		if s.initial {
			return notPublishedError(cfg.Publication, unpublished)
		}
		for _, t := range unpublished {
			c.logger().Warn("walex: a subscribed table is not in the publication (any more), so no events come for it; the other tables are delivered",
				logkey.Table, t.String(), logkey.Publication, cfg.Publication, logkey.Fix, addTableFix(cfg.Publication, []tableName{t}))
		}
	}
	if err := c.checkPartitioned(s.ctx, cat, cfg.Publication, pub, subs, states, s.initial); err != nil {
		return err
	}
	c.warnUnpublishedOperations(cfg.Publication, pub)
	c.warnUnjudgedFilters(states)
	return nil
}

// sortOut returns the tables that do not exist, and those that exist but
// are not published.
func sortOut(tables []tableName, states map[tableName]tableState) (missing, unpublished []tableName) {
	for _, t := range tables {
		switch st := states[t]; {
		case !st.exists:
			missing = append(missing, t)
		case !st.published:
			unpublished = append(unpublished, t)
		}
	}
	return missing, unpublished
}

// existing returns the tables that exist.
func existing(tables []tableName, states map[tableName]tableState) []tableName {
	var out []tableName
	for _, t := range tables {
		if states[t].exists {
			out = append(out, t)
		}
	}
	return out
}

func notPublishedError(pub string, tables []tableName) error {
	return fmt.Errorf("%w %q: %s, so the server would send none of its changes; run %s (or set Config.CreatePublication)",
		ErrNotPublished, pub, joinTables(tables), addTableFix(pub, tables))
}

func addTableFix(pub string, tables []tableName) string {
	var names []string
	for _, t := range tables {
		names = append(names, t.quoted())
	}
	return "ALTER PUBLICATION " + sqlquote.Ident(pub) + " ADD TABLE " + strings.Join(names, ", ")
}

// noteMissing warns once about each subscribed table that disappeared
// while Run runs, and notes when it exists again.
func (c *Client) noteMissing(subs, missing []tableName) {
	for _, t := range subs {
		gone := containsTable(missing, t)
		switch {
		case gone && !c.missing[t]:
			c.logger().Warn("walex: a subscribed table does not exist (any more); the other tables are delivered, and the table is picked up again if it is created under the same name",
				logkey.Table, t.String())
		case !gone && c.missing[t]:
			c.logger().Info("walex: a subscribed table that was missing exists again", logkey.Table, t.String())
		}
		c.missing[t] = gone
	}
}

// warnUnpublishedOperations warns, once per registration and operation in
// a Run, about handlers registered for an operation that the publication
// does not publish (publish = 'insert' with OnUpdate registered).
func (c *Client) warnUnpublishedOperations(pub string, p publication) {
	regs, _ := c.reg.snapshot()
	for _, r := range regs {
		for _, op := range r.types {
			key := fmt.Sprintf("%d/%s", r.seq, op)
			if p.ops[op] || c.warned[key] {
				continue
			}
			c.warned[key] = true
			c.logger().Warn("walex: a handler is registered for an operation the publication does not publish, so it will not be called for it",
				logkey.Handler, r.String(), logkey.Operation, string(op), logkey.Publication, pub,
				logkey.Fix, "ALTER PUBLICATION "+sqlquote.Ident(pub)+" SET (publish = 'insert, update, delete, truncate')")
		}
	}
}

// warnUnjudgedFilters logs, once per table and Run, that UnwatchedFields
// cannot judge the updates of a table without REPLICA IDENTITY FULL.
func (c *Client) warnUnjudgedFilters(states map[tableName]tableState) {
	regs, _ := c.reg.snapshot()
	for _, r := range regs {
		key := "filters/" + r.table.String()
		if r.all || len(r.filters.UnwatchedFields) == 0 || c.warned[key] {
			continue
		}
		st, ok := states[r.table]
		if !ok || !st.exists {
			continue
		}
		if st.identity != "f" {
			c.logger().Warn("walex: UnwatchedFields cannot judge updates of this table, so they are all kept: Postgres sends no old values without REPLICA IDENTITY FULL",
				logkey.Table, r.table.String(), logkey.Fix, "ALTER TABLE "+r.table.quoted()+" REPLICA IDENTITY FULL")
		}
		c.warned[key] = true
	}
}

// checkNewSubscriptions checks tables that AddSubscriptions adds while Run
// runs, the way the start-up checks do: each must exist and be published,
// or with Config.CreatePublication be added to the publication.
func (c *Client) checkNewSubscriptions(ctx context.Context, cfg *validated, tables []tableName) error {
	cat := newCatalog(cfg)
	defer cat.close()
	states, err := cat.tables(ctx, cfg.Publication, tables)
	if err != nil {
		return err
	}
	missing, unpublished := sortOut(tables, states)
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s in database %q; create it first", ErrTableNotFound, joinTables(missing), cfg.conn.Database)
	}
	if len(unpublished) > 0 {
		if !cfg.CreatePublication {
			return notPublishedError(cfg.Publication, unpublished)
		}
		if err := cat.ensurePublication(ctx, cfg.Publication, unpublished); err != nil {
			return err
		}
		if states, err = cat.tables(ctx, cfg.Publication, tables); err != nil {
			return err
		}
	}
	pub, err := cat.publication(ctx, cfg.Publication)
	if err != nil {
		return err
	}
	return c.checkPartitioned(ctx, cat, cfg.Publication, pub, tables, states, true)
}

// checkPartitioned finds the subscribed partitioned tables whose changes
// the publication sends under the names of their partitions
// (publish_via_partition_root = false), so that no events would come
// under the table's own name, unless every partition is subscribed too
// (then the table's subscription serves its snapshots): already, or among
// tables (the keys of states). Such a table is an ErrNotPublished error
// when strict, else a warning.
func (c *Client) checkPartitioned(ctx context.Context, cat *catalog, pubName string, pub publication, tables []tableName, states map[tableName]tableState, strict bool) error {
	if pub.viaRoot {
		return nil
	}
	for _, t := range tables {
		if st := states[t]; !st.exists || !st.published || !st.partitioned {
			continue
		}
		parts, err := cat.partitions(ctx, t)
		if err != nil {
			return err
		}
		covered := true
		for _, p := range parts {
			if _, ok := states[p]; !ok && !c.isSubscribed(p.Schema, p.Table) {
				covered = false
			}
		}
		if covered {
			continue
		}
		fix := "ALTER PUBLICATION " + sqlquote.Ident(pubName) + " SET (publish_via_partition_root = true), or subscribe to its partitions (" + joinTables(parts) + ")"
		if strict {
			return fmt.Errorf("%w %q under its name: %s is partitioned, and the publication sends the changes of its partitions under their own names (publish_via_partition_root = false), so no events would come for it; run %s",
				ErrNotPublished, pubName, t, fix)
		}
		c.logger().Warn("walex: a subscribed partitioned table gets no events: the publication sends its partitions' changes under their own names (publish_via_partition_root = false)",
			logkey.Table, t.String(), logkey.Publication, pubName, logkey.Fix, fix)
	}
	return nil
}
