package walex

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// String describes the configuration with the password masked.
func (c Config) String() string {
	return fmt.Sprintf("walex.Config{URL:%q Host:%q Port:%d User:%q Password:%s PasswordFunc:%s Database:%q ConnConfig:%s Name:%q Publication:%q Subscriptions:%q DurableSlot:%t FailoverSlot:%t SlotName:%q}",
		redactURL(c.URL), c.Host, c.Port, c.User, mask(c.Password), funcString(c.PasswordFunc != nil), c.Database, connConfigString(c.ConnConfig), c.Name, c.Publication, c.Subscriptions, c.DurableSlot, c.FailoverSlot, c.SlotName)
}

// connConfigString describes a ConnConfig without its password.
func connConfigString(cc *pgconn.Config) string {
	if cc == nil {
		return "nil"
	}
	return fmt.Sprintf("{Host:%q Port:%d User:%q Password:%s Database:%q TLS:%t}", cc.Host, cc.Port, cc.User, mask(cc.Password), cc.Database, cc.TLSConfig != nil)
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb (%v, %+v, %s, ...) use String.
func (c Config) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue logs the configuration with the password masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", redactURL(c.URL)),
		slog.String("host", c.Host),
		slog.Int("port", int(c.Port)),
		slog.String("user", c.User),
		slog.Bool("password_func", c.PasswordFunc != nil),
		slog.String("database", c.Database),
		slog.String("name", c.Name),
		slog.String("publication", c.Publication),
		slog.Any("subscriptions", c.Subscriptions),
		slog.Bool("durable_slot", c.DurableSlot),
		slog.Bool("failover_slot", c.FailoverSlot),
		slog.String("slot_name", c.SlotName),
		slog.String("conn_config", connConfigString(c.ConnConfig)),
	)
}

// funcString shows whether a function is set, not its address.
func funcString(set bool) string {
	if set {
		return "set"
	}
	return "nil"
}

func mask(pw string) string {
	if pw == "" {
		return `""`
	}
	return "xxxxx"
}

// redactURL hides the password of a URL or DSN.
func redactURL(u string) string {
	if u == "" {
		return ""
	}
	if strings.Contains(u, "://") {
		scheme, rest, _ := strings.Cut(u, "://")
		at := strings.LastIndex(rest, "@")
		slash := strings.IndexAny(rest, "/?")
		if at >= 0 && (slash < 0 || at < slash) {
			userinfo := rest[:at]
			if user, _, ok := strings.Cut(userinfo, ":"); ok {
				rest = user + ":xxxxx" + rest[at:]
			}
		}
		// password=... in the query string
		return scheme + "://" + redactKV(rest, "&")
	}
	return redactDSN(u)
}

// redactDSN hides the password of a key/value DSN, whose values may be
// quoted ("password='a b'"). What cannot be read as key=value pairs from
// the first unreadable setting on is hidden too.
func redactDSN(dsn string) string {
	var b strings.Builder
	end := 0
	for st := range dsnSettingSpans(dsn) {
		b.WriteString(dsn[end:st.valStart])
		if strings.HasSuffix(strings.ToLower(st.key), "password") {
			b.WriteString("xxxxx")
		} else {
			b.WriteString(dsn[st.valStart:st.valEnd])
		}
		end = st.valEnd
	}
	rest := dsn[end:]
	if strings.TrimSpace(rest) != "" {
		rest = " xxxxx"
	}
	return b.String() + rest
}

func redactKV(s, sep string) string {
	parts := strings.Split(s, sep)
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.HasSuffix(strings.ToLower(strings.TrimLeft(k, "?")), "password") {
			parts[i] = k + "=xxxxx"
		}
	}
	return strings.Join(parts, sep)
}
