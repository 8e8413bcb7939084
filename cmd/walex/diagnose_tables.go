package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/walex-go/walex/internal/sqlquote"
)

// tableDetailsSQL is the query for what the checks need of tables: kind,
// persistence, replica identity, primary key, replica identity index,
// privileges, and whether publication $1 publishes them (FOR ALL TABLES,
// listed itself or through a partition ancestor, or, on PostgreSQL 15+,
// through the schema of one of them). It reads the catalogs only, so it
// takes no lock on the tables. where selects the tables (alias c, n).
func (k *checker) tableDetailsSQL(where string) string {
	lineage := "SELECT c.oid"
	if k.d.version >= 12 {
		lineage = "SELECT c.oid UNION SELECT relid FROM pg_partition_ancestors(c.oid)" // which has no rows for a table outside a partition tree
	}
	bySchema := ""
	if k.d.version >= 15 {
		bySchema = ` OR EXISTS (SELECT 1 FROM pg_publication_namespace pn, pg_class l
			WHERE pn.pnpubid = p.oid AND l.relnamespace = pn.pnnspid AND l.oid IN (` + lineage + `))`
	}
	return `SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.relreplident,
		(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_index i
		   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		  WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
		(SELECT x.relname FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
		  WHERE i.indrelid = c.oid AND i.indisreplident) AS ident_index,
		has_table_privilege(c.oid, 'SELECT') AS can_select,
		pg_has_role(c.relowner, 'USAGE') AS owner,
		coalesce((SELECT (p.puballtables AND c.relpersistence = 'p')
		    OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid IN (` + lineage + `))` + bySchema + `
		   FROM pg_publication p WHERE p.pubname = $1), false) AS published
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND (` + where + `)
		ORDER BY c.relkind = 'p' DESC, n.nspname, c.relname`
}

// checkTables checks the tables of --tables (with their partitions), or
// else every table the publication publishes, reporting for those only
// what is not OK.
func (k *checker) checkTables() {
	if len(k.tables) > 0 {
		for _, t := range k.tables {
			k.checkNamedTable(t)
		}
		return
	}
	if !k.pubExists {
		return
	}
	rows, err := k.d.query(k.ctx, k.tableDetailsSQL(`n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`), k.pub)
	if err != nil {
		k.failed("tables", err)
		return
	}
	before := len(k.findings)
	checked := 0
	for _, r := range rows {
		if r.bool("published") {
			k.checkTable(r, true)
			checked++
		}
	}
	if len(k.findings) == before && checked > 0 {
		k.add("tables", statusOK, fmt.Sprintf("%s of the publication checked: keys, replica identities and privileges are fine", plural(checked, "table")))
	}
}

// checkNamedTable checks a table of --tables and, when it is
// partitioned, its partitions.
func (k *checker) checkNamedTable(t tableRef) {
	where := "c.oid = to_regclass($2)"
	if k.d.version >= 12 {
		where += " OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass($2)))"
	}
	rows, err := k.d.query(k.ctx, k.tableDetailsSQL(where), k.pub, t.quoted())
	if err != nil {
		k.failed("table "+t.String(), err)
		return
	}
	if len(rows) == 0 {
		k.add("table "+t.String(), statusProblem, fmt.Sprintf("does not exist in database %s (or is not a table)", k.tgt.cfg.Database))
		return
	}
	for _, r := range rows {
		k.checkTable(r, false)
	}
	if len(rows) > 1 && rows[0]["relkind"] == "p" && k.pubExists && !k.pubViaRoot && rows[0].bool("published") {
		k.partitionedByName(t, rows[1:])
	}
}

// partitionedByName reports a partitioned table of --tables whose
// publication sends its partitions' changes under their own names
// (publish_via_partition_root = false): walex refuses to subscribe to the
// table alone, as no event would name it.
func (k *checker) partitionedByName(t tableRef, parts []row) {
	var leaves []string
	for _, r := range parts {
		if r["relkind"] != "p" {
			leaves = append(leaves, r["nspname"]+"."+r["relname"])
		}
	}
	for _, l := range leaves {
		if slices.ContainsFunc(k.tables, func(x tableRef) bool { return x.String() == l }) {
			continue
		}
		k.add("table "+t.String(), statusProblem,
			"is partitioned, and publication "+k.pub+" sends its partitions' changes under their own names (publish_via_partition_root = false): no event names "+t.String(),
			"ALTER PUBLICATION "+sqlquote.Ident(k.pub)+" SET (publish_via_partition_root = true);",
			"-- or subscribe to its partitions: --tables "+strings.Join(leaves, ","))
		return
	}
}

// checkTable reports on one table; quiet leaves out its OK line.
func (k *checker) checkTable(r row, quiet bool) {
	qname := sqlquote.Ident(r["nspname"]) + "." + sqlquote.Ident(r["relname"])
	check := "table " + r["nspname"] + "." + r["relname"]
	at := len(k.findings) // the OK line goes before the table's other findings
	var notes []string
	if k.pubExists {
		if note, ok := k.publishedNote(check, qname, r); ok {
			notes = append(notes, note)
		}
	}
	if r["relkind"] == "p" {
		notes = append(notes, "partitioned: its partitions carry the changes, checked below")
		k.ok(at, check, quiet, notes)
		return
	}
	if r["relpersistence"] == "u" {
		k.add(check, statusProblem, "is UNLOGGED: its changes are not written to the WAL, so they are never replicated",
			"ALTER TABLE "+qname+" SET LOGGED;")
	}
	if note, ok := k.identity(check, qname, r); ok {
		notes = append(notes, note)
	}
	if !r.bool("can_select") {
		k.add(check, statusWarning, "the role may not SELECT it: snapshots (--snapshot, Config.Snapshot) read it",
			"GRANT SELECT ON "+qname+" TO "+sqlquote.Ident(k.role["name"])+";")
	}
	k.ok(at, check, quiet, notes)
}

// ok inserts the OK line of a table at position at of the findings.
func (k *checker) ok(at int, check string, quiet bool, notes []string) {
	if !quiet && len(notes) > 0 {
		k.findings = slices.Insert(k.findings, at, finding{Check: check, Status: statusOK, Message: strings.Join(notes, "; ")})
	}
}

// publishedNote reports a table that the publication does not publish,
// or returns a note for the OK line.
func (k *checker) publishedNote(check, qname string, r row) (string, bool) {
	add := "ALTER PUBLICATION " + sqlquote.Ident(k.pub) + " ADD TABLE " + qname + ";"
	switch {
	case r.bool("published"):
		return "in publication " + k.pub, true
	case k.createPub && r.bool("owner"):
		return "not in publication " + k.pub + " yet: walex adds it (--create-publication)", true
	case k.createPub:
		k.add(check, statusProblem, "is not in publication "+k.pub+", and walex cannot add it: the role does not own the table",
			add, "-- run it as the table's owner (or a superuser)")
	default:
		k.add(check, statusProblem, "is not in publication "+k.pub+": the server sends none of its changes", add)
	}
	return "", false
}

// identity reports a replica identity that gives updates and deletes no
// key, or returns a note for the OK line.
func (k *checker) identity(check, qname string, r row) (string, bool) {
	id := r["relreplident"]
	switch {
	case id == "f":
		return "REPLICA IDENTITY FULL: updates and deletes carry the whole old row", true
	case id == "i" && r.has("ident_index"):
		return "REPLICA IDENTITY USING INDEX " + r["ident_index"] + ": updates and deletes carry its columns", true
	case id == "d" && r.has("pk"):
		return "primary key (" + r["pk"] + "), REPLICA IDENTITY DEFAULT: deletes carry the key, updates no old values (REPLICA IDENTITY FULL gives OldRecord and Changes)", true
	}
	var what string
	switch id {
	case "d":
		what = "has no primary key and REPLICA IDENTITY DEFAULT"
	case "n":
		what = "has REPLICA IDENTITY NOTHING"
	default:
		what = "has REPLICA IDENTITY USING INDEX, but its index is gone"
	}
	st := statusProblem
	msg := what + ", so its updates and deletes carry no key: while it is in a publication that publishes them, the server rejects its UPDATE and DELETE statements"
	if k.pubExists && !k.pubUpdates {
		st, msg = statusWarning, what+": harmless while publication "+k.pub+" publishes no updates or deletes, a problem once it does"
	}
	k.add(check, st, msg,
		"ALTER TABLE "+qname+" REPLICA IDENTITY FULL;",
		"-- or give it a primary key: ALTER TABLE "+qname+" ADD PRIMARY KEY (<columns>);")
	return "", false
}

// checkInactiveSlots reports slots that nobody streams from: they retain
// WAL on the server until they are used or dropped.
func (k *checker) checkInactiveSlots() {
	slots, err := listSlots(k.ctx, k.d, "NOT s.active")
	if err != nil {
		k.failed("slots", err)
		return
	}
	if len(slots) == 0 {
		k.add("slots", statusOK, "no inactive replication slots")
		return
	}
	for _, s := range slots {
		drop := "SELECT pg_drop_replication_slot(" + sqlquote.Literal(s.Name) + ");"
		where := s.Type
		if s.Database != "" {
			where += ", database " + s.Database
		}
		if s.WALStatus == "lost" || s.InvalidationReason != "" {
			k.add("slot "+s.Name, statusProblem, fmt.Sprintf("(%s) is invalidated (wal_status %s%s): it can never stream again (walex: ErrSlotInvalidated)",
				where, orDash(s.WALStatus), prefixed(", ", s.InvalidationReason)), drop)
			continue
		}
		detail := "retains " + bytesOrDash(s.RetainedBytes) + " of WAL"
		if s.WALStatus != "" {
			detail += ", wal_status " + s.WALStatus
		}
		if s.InactiveSince != "" {
			detail += ", inactive for " + s.inactiveFor.String()
		}
		k.add("slot "+s.Name, statusWarning, fmt.Sprintf("(%s) is inactive and %s", where, detail),
			drop+" -- if its consumer is gone for good")
	}
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
