package walex

// SnapshotStoreDDL is the statement that creates the snapshot progress
// table ("schema.table"): the tests run it as an admin, for a role that
// may not create tables.
func SnapshotStoreDDL(table string) string {
	t, err := parseTableName(table)
	if err != nil {
		panic(err)
	}
	return storeDDL(t)
}
