package walex

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// String describes the configuration with the password masked.
func (c Config) String() string {
	return fmt.Sprintf("walex.Config{URL:%q Host:%q Port:%d User:%q Password:%s Database:%q ConnConfig:%s Name:%q Publication:%q Subscriptions:%q DurableSlot:%t SlotName:%q}",
		redactURL(c.URL), c.Host, c.Port, c.User, mask(c.Password), c.Database, connConfigString(c.ConnConfig), c.Name, c.Publication, c.Subscriptions, c.DurableSlot, c.SlotName)
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
		slog.String("database", c.Database),
		slog.String("name", c.Name),
		slog.String("publication", c.Publication),
		slog.Any("subscriptions", c.Subscriptions),
		slog.Bool("durable_slot", c.DurableSlot),
		slog.String("slot_name", c.SlotName),
		slog.String("conn_config", connConfigString(c.ConnConfig)),
	)
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
	return redactKV(u, " ")
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
