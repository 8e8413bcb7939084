package walexprom

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/walex-go/walex"
)

// Metric names; the plugins/otel module exports the same.
const (
	nameReceivedLSN      = "walex_received_lsn_bytes"
	nameAckedLSN         = "walex_acked_lsn_bytes"
	nameServerWALEnd     = "walex_server_wal_end_lsn_bytes"
	nameLag              = "walex_lag_bytes"
	nameEvents           = "walex_events_total"
	nameTransactions     = "walex_transactions_total"
	nameMessages         = "walex_messages_total"
	nameSchemaChanges    = "walex_schema_changes_total"
	nameRetries          = "walex_handler_retries_total"
	nameReconnects       = "walex_reconnects_total"
	nameConnected        = "walex_connected"
	nameSnapshotRows     = "walex_snapshot_rows_total"
	nameSnapshotEstimate = "walex_snapshot_estimated_rows"
	nameSnapshotDone     = "walex_snapshot_done"
	nameSnapshotFailed   = "walex_snapshot_failed"
	nameHandlerDuration  = "walex_handler_duration_seconds"
	nameHandlerEvents    = "walex_handler_events"
)

// Label names.
const (
	labelClient  = "client"
	labelTable   = "table"
	labelMethod  = "handler_method"
	labelOutcome = "outcome"
)

// statsCollector turns a Client's Stats into constant metrics at each
// scrape: the client keeps the counts, so nothing here is updated on the
// hot path.
type statsCollector struct {
	client *walex.Client

	receivedLSN, ackedLSN, serverWALEnd, lag      *prometheus.Desc
	events, transactions, messages, schemaChanges *prometheus.Desc
	retries, reconnects, connected                *prometheus.Desc
	snapRows, snapEstimate, snapDone, snapFail    *prometheus.Desc
}

func newStatsCollector(c *walex.Client, labels prometheus.Labels) *statsCollector {
	desc := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, variable, labels)
	}
	return &statsCollector{
		client:        c,
		receivedLSN:   desc(nameReceivedLSN, "Highest WAL position received from the server, in bytes (the LSN as a number)."),
		ackedLSN:      desc(nameAckedLSN, "WAL position acknowledged to the server (end of the last transaction all handlers finished), in bytes."),
		serverWALEnd:  desc(nameServerWALEnd, "Server's WAL end as of its last message, in bytes."),
		lag:           desc(nameLag, "WAL the server holds for this client that it has not finished: server WAL end minus acknowledged position, in bytes."),
		events:        desc(nameEvents, "Events passed to handlers (again when a fault delivers them again)."),
		transactions:  desc(nameTransactions, "Transactions fully handled."),
		messages:      desc(nameMessages, "Logical decoding messages passed to message handlers."),
		schemaChanges: desc(nameSchemaChanges, "Schema changes seen in subscribed tables."),
		retries:       desc(nameRetries, "Retries of handler calls."),
		reconnects:    desc(nameReconnects, "Reconnects of the replication connection."),
		connected:     desc(nameConnected, "1 while a replication connection is up, else 0."),
		snapRows:      desc(nameSnapshotRows, "Rows a table's snapshot delivered so far.", labelTable),
		snapEstimate:  desc(nameSnapshotEstimate, "Planner's estimate of a table's rows when its snapshot started; 0 when unknown.", labelTable),
		snapDone:      desc(nameSnapshotDone, "1 once a table's snapshot delivered and acknowledged its last row, else 0.", labelTable),
		snapFail:      desc(nameSnapshotFailed, "1 if a table's snapshot stopped for good with an error, else 0.", labelTable),
	}
}

// Describe implements prometheus.Collector.
func (s *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		s.receivedLSN, s.ackedLSN, s.serverWALEnd, s.lag,
		s.events, s.transactions, s.messages, s.schemaChanges,
		s.retries, s.reconnects, s.connected,
		s.snapRows, s.snapEstimate, s.snapDone, s.snapFail,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := s.client.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(s.receivedLSN, float64(st.ReceivedLSN))
	gauge(s.ackedLSN, float64(st.AckedLSN))
	gauge(s.serverWALEnd, float64(st.ServerWALEnd))
	gauge(s.lag, float64(st.LagBytes))
	counter(s.events, st.Events)
	counter(s.transactions, st.Transactions)
	counter(s.messages, st.Messages)
	counter(s.schemaChanges, st.SchemaChanges)
	counter(s.retries, st.Retries)
	counter(s.reconnects, st.Reconnects)
	gauge(s.connected, bit(st.Connected))
	for _, p := range latestPerTable(st.Snapshots) {
		ch <- prometheus.MustNewConstMetric(s.snapRows, prometheus.CounterValue, float64(p.Rows), p.Table)
		gauge(s.snapEstimate, float64(p.EstimatedRows), p.Table)
		gauge(s.snapDone, bit(!p.Done.IsZero()), p.Table)
		gauge(s.snapFail, bit(p.Err != nil), p.Table)
	}
}

// latestPerTable keeps one progress per table (the last), since a
// scrape must not hold two series with the same labels.
func latestPerTable(snaps []walex.SnapshotProgress) []walex.SnapshotProgress {
	at := make(map[string]int, len(snaps))
	out := make([]walex.SnapshotProgress, 0, len(snaps))
	for _, p := range snaps {
		if i, ok := at[p.Table]; ok {
			out[i] = p
			continue
		}
		at[p.Table] = len(out)
		out = append(out, p)
	}
	return out
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
