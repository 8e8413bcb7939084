package pgvalue

// UnchangedValue is the type of [Unchanged].
type UnchangedValue struct{}

// String returns a marker that shows up in logs and JSON.
func (UnchangedValue) String() string { return "<unchanged-toast>" }

// MarshalJSON encodes Unchanged as the JSON object {"$walex":"unchanged-toast"}.
func (UnchangedValue) MarshalJSON() ([]byte, error) {
	return []byte(`{"$walex":"unchanged-toast"}`), nil
}

// Unchanged stands for an unchanged TOASTed value that Postgres did not
// send in an update. It is never reported as a change.
var Unchanged = UnchangedValue{}
