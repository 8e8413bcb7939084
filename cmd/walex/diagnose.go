package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/walex-go/walex/internal/pgconnect"
	"github.com/walex-go/walex/internal/sqlquote"
)

// checker runs the checks of walex check and collects their findings.
type checker struct {
	ctx       context.Context
	d         *db
	tgt       *target
	pub       string     // "" when not asked
	tables    []tableRef // --tables; nil: the publication's
	createPub bool

	findings []finding
	role     row // session_user's attributes and privileges
	// the publication, when it exists
	pubExists  bool
	pubUpdates bool // publishes update or delete
	pubViaRoot bool // publish_via_partition_root: partitions' changes under the root's name
	sendersOK  bool // a WAL sender is free for a replication connection
}

func (k *checker) add(check string, st status, msg string, fix ...string) {
	k.findings = append(k.findings, finding{Check: check, Status: st, Message: msg, Fix: fix})
}

// failed notes a check that could not run.
func (k *checker) failed(check string, err error) {
	k.add(check, statusWarning, "could not be checked: "+k.tgt.scrub(err.Error()))
}

func (k *checker) run() {
	k.checkVersion()
	k.checkWALLevel()
	k.checkSlotCapacity()
	k.checkSenders()
	k.checkWALKeepSize()
	k.checkRole()
	k.checkPublication()
	k.checkTables()
	k.checkInactiveSlots()
}

func (k *checker) checkVersion() {
	v := k.d.version
	switch {
	case v < 10:
		k.add("server", statusProblem, fmt.Sprintf("PostgreSQL %s; walex needs 10 or later", k.d.release))
	case v < 14:
		k.add("server", statusWarning, fmt.Sprintf("PostgreSQL %s; snapshots and logical messages need 14 or later", k.d.release))
	default:
		k.add("server", statusOK, "PostgreSQL "+k.d.release)
	}
}

func (k *checker) checkWALLevel() {
	r, err := k.d.queryRow(k.ctx, `SELECT current_setting('wal_level') AS v`)
	if err != nil {
		k.failed("wal_level", err)
		return
	}
	if r["v"] == "logical" {
		k.add("wal_level", statusOK, "logical")
		return
	}
	k.add("wal_level", statusProblem, fmt.Sprintf("is %s; logical replication needs logical", r["v"]),
		"ALTER SYSTEM SET wal_level = logical;",
		"-- then restart PostgreSQL (a reload is not enough)",
		"-- Amazon RDS/Aurora: rds.logical_replication = 1 in the parameter group; Cloud SQL: the flag cloudsql.logical_decoding = on")
}

func (k *checker) checkSlotCapacity() {
	r, err := k.d.queryRow(k.ctx, `SELECT current_setting('max_replication_slots')::int AS max, (SELECT count(*) FROM pg_replication_slots) AS used`)
	if err != nil {
		k.failed("replication slots", err)
		return
	}
	limit, used := r.int("max"), r.int("used")
	msg := fmt.Sprintf("max_replication_slots = %d, %d in use, %d free", limit, used, limit-used)
	if limit-used > 0 {
		k.add("replication slots", statusOK, msg)
		return
	}
	k.add("replication slots", statusProblem, msg+"; every walex client needs one",
		"-- drop the slots nobody uses (see the inactive slots below), or allow more:",
		fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d;", max(2*limit, 10)),
		"-- then restart PostgreSQL")
}

func (k *checker) checkSenders() {
	r, err := k.d.queryRow(k.ctx, `SELECT current_setting('max_wal_senders')::int AS max,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender') AS used`)
	if err != nil {
		k.failed("wal senders", err)
		return
	}
	limit, used := r.int("max"), r.int("used")
	msg := fmt.Sprintf("max_wal_senders = %d, %d in use, %d free", limit, used, limit-used)
	if limit-used > 0 {
		k.sendersOK = true
		k.add("wal senders", statusOK, msg)
		return
	}
	k.add("wal senders", statusProblem, msg+"; every walex client streams over one",
		fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d;", max(2*limit, 10)),
		"-- then restart PostgreSQL")
}

func (k *checker) checkWALKeepSize() {
	if k.d.version < 13 {
		return
	}
	r, err := k.d.queryRow(k.ctx, `SELECT current_setting('max_slot_wal_keep_size') AS v`)
	if err != nil {
		k.failed("max_slot_wal_keep_size", err)
		return
	}
	if r["v"] != "-1" {
		k.add("max_slot_wal_keep_size", statusOK, r["v"]+": a slot further behind is invalidated (walex reports ErrSlotInvalidated) instead of filling the disk")
		return
	}
	k.add("max_slot_wal_keep_size", statusWarning, "is -1 (unlimited): a durable slot whose consumer stopped keeps WAL until the disk is full",
		"ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; -- what the disk can spare",
		"SELECT pg_reload_conf();")
}

func (k *checker) checkRole() {
	r, err := k.d.queryRow(k.ctx, `SELECT session_user AS name, r.rolsuper, r.rolreplication, r.rolcanlogin,
		CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')
		     THEN pg_has_role(session_user, 'rds_replication', 'MEMBER') ELSE false END AS rds,
		has_database_privilege(current_database(), 'CREATE') AS can_create, current_database() AS db
		FROM pg_roles r WHERE r.rolname = session_user`)
	if err != nil {
		k.failed("role", err)
		return
	}
	k.role = r
	name := r["name"]
	var attrs []string
	for _, a := range []struct{ col, name string }{{"rolsuper", "superuser"}, {"rolreplication", "REPLICATION"}, {"rds", "rds_replication"}, {"rolcanlogin", "LOGIN"}} {
		if r.bool(a.col) {
			attrs = append(attrs, a.name)
		}
	}
	msg := name + ": " + strings.Join(attrs, ", ")
	if !k.mayReplicate() {
		k.add("role", statusProblem, msg+"; streaming needs REPLICATION (or superuser)",
			"ALTER ROLE "+sqlquote.Ident(name)+" REPLICATION;",
			"-- Amazon RDS/Aurora: GRANT rds_replication TO "+sqlquote.Ident(name)+";")
	} else {
		k.add("role", statusOK, msg)
		k.checkReplicationConnection()
	}
	if k.createPub {
		if r.bool("can_create") {
			k.add("role", statusOK, fmt.Sprintf("may create publications (CREATE on database %s)", r["db"]))
		} else {
			k.add("role", statusProblem, fmt.Sprintf("may not create publications (--create-publication): it lacks CREATE on database %s", r["db"]),
				"GRANT CREATE ON DATABASE "+sqlquote.Ident(r["db"])+" TO "+sqlquote.Ident(name)+";")
		}
	}
}

func (k *checker) mayReplicate() bool {
	return k.role.bool("rolsuper") || k.role.bool("rolreplication") || k.role.bool("rds")
}

// checkReplicationConnection opens a replication connection as walex
// does, which pg_hba.conf must allow separately.
func (k *checker) checkReplicationConnection() {
	const check = "replication connection"
	if !k.sendersOK {
		return // it would fail for want of a WAL sender, reported above
	}
	cc := k.tgt.cfg.Copy()
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["replication"] = "database"
	cc.RuntimeParams["application_name"] = "walex-cli"
	conn, err := pgconnect.Connect(k.ctx, cc, "replication")
	if err != nil {
		k.add(check, statusProblem, "cannot be opened: "+k.tgt.scrub(err.Error()),
			"-- pg_hba.conf needs a line for it, e.g.: host replication "+k.role["name"]+" <client address> scram-sha-256",
			"-- (PostgreSQL 16+ also matches 'all' for replication), then: SELECT pg_reload_conf();")
		return
	}
	defer conn.Close(context.WithoutCancel(k.ctx))
	if _, err := conn.Exec(k.ctx, "IDENTIFY_SYSTEM").ReadAll(); err != nil {
		k.add(check, statusProblem, "IDENTIFY_SYSTEM failed: "+k.tgt.scrub(err.Error()))
		return
	}
	k.add(check, statusOK, "allowed (pg_hba.conf)")
}

func (k *checker) checkPublication() {
	if k.pub == "" {
		return
	}
	check := "publication " + k.pub
	truncate, viaRoot := "true", "false"
	if k.d.version >= 11 {
		truncate = "pubtruncate"
	}
	if k.d.version >= 13 {
		viaRoot = "pubviaroot"
	}
	rows, err := k.d.query(k.ctx, `SELECT oid, puballtables, pubinsert, pubupdate, pubdelete, `+truncate+` AS pubtruncate, `+viaRoot+` AS pubviaroot
		FROM pg_publication WHERE pubname = $1`, k.pub)
	if err != nil {
		k.failed(check, err)
		return
	}
	if len(rows) == 0 {
		k.missingPublication(check)
		return
	}
	p := rows[0]
	k.pubExists = true
	k.pubUpdates = p.bool("pubupdate") || p.bool("pubdelete")
	k.pubViaRoot = p.bool("pubviaroot")
	var ops, missing []string
	for _, op := range []string{"insert", "update", "delete", "truncate"} {
		if p.bool("pub" + op) {
			ops = append(ops, op)
		} else {
			missing = append(missing, op)
		}
	}
	what, empty, err := k.publishedSet(p)
	if err != nil {
		k.failed(check, err)
		return
	}
	if empty {
		k.add(check, statusWarning, "publishes no tables", "ALTER PUBLICATION "+sqlquote.Ident(k.pub)+" ADD TABLE "+k.tableList()+";")
	} else {
		k.add(check, statusOK, fmt.Sprintf("publishes %s of %s", orNone(ops), what))
	}
	if len(missing) > 0 {
		k.add(check, statusWarning, fmt.Sprintf("does not publish %s: walex gets no such events", strings.Join(missing, ", ")),
			"ALTER PUBLICATION "+sqlquote.Ident(k.pub)+" SET (publish = 'insert, update, delete, truncate');")
	}
}

func (k *checker) missingPublication(check string) {
	create := "CREATE PUBLICATION " + sqlquote.Ident(k.pub) + " FOR TABLE " + k.tableList() + ";"
	if !k.createPub {
		k.add(check, statusProblem, "does not exist", create)
		return
	}
	if k.role.bool("can_create") {
		k.add(check, statusOK, "does not exist yet; walex creates it (--create-publication, Config.CreatePublication)")
		return
	}
	k.add(check, statusProblem, "does not exist, and the role may not create it (see role)", create)
}

// tableList is --tables as SQL, or a placeholder.
func (k *checker) tableList() string {
	if len(k.tables) == 0 {
		return "<schema.table>, ..."
	}
	names := make([]string, len(k.tables))
	for i, t := range k.tables {
		names[i] = t.quoted()
	}
	return strings.Join(names, ", ")
}

// publishedSet describes which tables the publication p lists; empty
// reports that it lists none.
func (k *checker) publishedSet(p row) (what string, empty bool, err error) {
	if p.bool("puballtables") {
		return "ALL TABLES", false, nil
	}
	rows, err := k.d.query(k.ctx, `SELECT n.nspname, c.relname FROM pg_publication_rel pr
		JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE pr.prpubid = $1 ORDER BY 1, 2`, p["oid"])
	if err != nil {
		return "", false, err
	}
	var names []string
	for _, r := range rows {
		names = append(names, r["nspname"]+"."+r["relname"])
	}
	what = plural(len(names), "table")
	empty = len(names) == 0
	if len(names) > 0 {
		what += " (" + truncateList(names, 10) + ")"
	}
	if k.d.version >= 15 {
		rows, err := k.d.query(k.ctx, `SELECT n.nspname FROM pg_publication_namespace pn JOIN pg_namespace n ON n.oid = pn.pnnspid
			WHERE pn.pnpubid = $1 ORDER BY 1`, p["oid"])
		if err != nil {
			return "", false, err
		}
		for _, r := range rows {
			what += ", all tables in schema " + r["nspname"]
			empty = false
		}
	}
	return what, empty, nil
}

func truncateList(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + " and " + strconv.Itoa(len(names)-n) + " more"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
