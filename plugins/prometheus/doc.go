// Package walexprom exports the metrics of a [walex.Client] to Prometheus:
// its positions in the WAL, its lag, its counters, its snapshots' progress
// (read from Client.Stats at each scrape), and the duration and size of
// each handler call (measured by a middleware).
//
// The package is named walexprom, not prometheus, so that it sits next to
// client_golang's prometheus package in the same file without an alias.
// Its import path is github.com/walex-go/walex/plugins/prometheus; it is a
// module of its own, so importing walex does not pull in client_golang.
//
// # Use
//
// Instrument registers the metrics and installs the middleware in one
// call; do it before Run:
//
//	c, err := walex.New(cfg)
//	...
//	reg := prometheus.NewRegistry()
//	if _, err := walexprom.Instrument(c, reg, walexprom.Options{}); err != nil {
//		return err
//	}
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//	go http.ListenAndServe(":9187", nil)
//	return c.Run(ctx)
//
// With prometheus.DefaultRegisterer, promhttp.Handler() serves them with
// the Go runtime's metrics. For control over where the middleware sits
// among others, call New, register the *Metrics yourself, and install
// Metrics.Middleware with c.Use where you want it. Several clients in one
// process each get their own Metrics with a different Options.Client; for
// further constant labels, wrap the registerer with
// prometheus.WrapRegistererWith.
//
// # Metrics
//
// Every metric carries the constant label client (Options.Client).
// Read from Client.Stats at scrape time:
//
//	walex_received_lsn_bytes        gauge    highest WAL position received (the LSN as a number)
//	walex_acked_lsn_bytes           gauge    position acknowledged to the server
//	walex_server_wal_end_lsn_bytes  gauge    the server's WAL end as of its last message
//	walex_lag_bytes                 gauge    server WAL end minus acknowledged position
//	walex_events_total              counter  events passed to handlers
//	walex_transactions_total        counter  transactions fully handled
//	walex_messages_total            counter  logical decoding messages handled
//	walex_schema_changes_total      counter  schema changes of subscribed tables
//	walex_handler_retries_total     counter  retries of handler calls
//	walex_reconnects_total          counter  reconnects
//	walex_connected                 gauge    1 while a replication connection is up
//	walex_snapshot_rows_total{table}      counter  rows the table's snapshot delivered
//	walex_snapshot_estimated_rows{table}  gauge    the planner's row estimate at its start
//	walex_snapshot_done{table}            gauge    1 once the snapshot finished
//	walex_snapshot_failed{table}          gauge    1 if it stopped for good with an error
//
// Measured by the middleware, for each handler call (each attempt: a retry
// is observed again), with handler_method ("OnInsert", "OnEvent", ...) and
// table ("public.users", or "*" for AllTables) from [walex.CallInfoFrom]:
//
//	walex_handler_duration_seconds{handler_method,table,outcome}  histogram  outcome "ok" or "error" (a panic is an error)
//	walex_handler_events{handler_method,table}                    histogram  events per call
//
// Duration buckets run from 0.5 ms to 30 s and event buckets from 1 to
// 10000 (Options changes them). The _sum of walex_handler_events is the
// events handled, its _count the calls. LSN gauges are float64: exact up
// to 2^53 bytes of WAL (8 PiB).
//
// # Alerts
//
// The lag is the WAL that the server keeps for the client and that the
// client has not finished (0 until the first acknowledgement): it grows
// when handlers are slow or failing, or the stream carries more than they
// keep up with. Sample rules:
//
//	groups:
//	  - name: walex
//	    rules:
//	      - alert: WalexLagging
//	        expr: walex_lag_bytes > 512 * 1024 * 1024
//	        for: 10m
//	        annotations:
//	          summary: "walex client {{ $labels.client }} is {{ $value | humanize1024 }}B behind the server's WAL"
//	      - alert: WalexDisconnected
//	        expr: walex_connected == 0
//	        for: 5m
//	        annotations:
//	          summary: "walex client {{ $labels.client }} has no replication connection"
//	      - alert: WalexHandlerErrors
//	        expr: sum by (client, handler_method, table) (rate(walex_handler_duration_seconds_count{outcome="error"}[5m])) > 0
//	        for: 10m
//
// The lag is measured from the client's side: while it is disconnected,
// walex_lag_bytes holds its last value, so alert on walex_connected as
// well; a process that is down exports nothing, which
// absent(walex_connected{client="myapp"}) catches. For a durable slot,
// the server's own view is pg_replication_slots.confirmed_flush_lsn
// against pg_current_wal_lsn().
package walexprom
