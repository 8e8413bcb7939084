package walex

import "context"

// CallInfo describes the handler call that a middleware (see Client.Use)
// wraps: which registration, for which table, and which attempt. Metrics
// and tracing middleware read it with CallInfoFrom; the events themselves
// tell the rest (their type, table, commit LSN and IDs).
type CallInfo struct {
	// Handler names the registration, as in HandlerError.Handler:
	// e.g. `OnInsert("public.users") #2 (main.saveUser)`.
	Handler string
	// Method is the registering method: "OnInsert", "OnUpdate",
	// "OnDelete", "OnTruncate", "OnRead", "OnEvent" or "OnTx".
	Method string
	// Table is the registration's table as schema.table, or AllTables.
	Table string
	// Attempt is 1 for the first call, 2 for the first retry, and so on.
	Attempt int
}

// callInfoKey is the context key of a call's *callInfo.
type callInfoKey struct{}

// callInfo is what the context of a handler call carries: the
// registration and attempt, described only when CallInfoFrom asks.
type callInfo struct {
	reg     *registration
	attempt int
}

// CallInfoFrom returns the handler call that ctx belongs to: in a
// middleware installed with Client.Use, and in the handler and functions
// below it. ok is false for any other context. The context carries the
// call only when the client has middleware, so handlers without
// middleware pay nothing for it.
func CallInfoFrom(ctx context.Context) (info CallInfo, ok bool) {
	ci, ok := ctx.Value(callInfoKey{}).(*callInfo)
	if !ok || ci == nil {
		return CallInfo{}, false
	}
	table := AllTables
	if !ci.reg.all {
		table = ci.reg.table.String()
	}
	return CallInfo{Handler: ci.reg.String(), Method: ci.reg.method(), Table: table, Attempt: ci.attempt}, true
}
