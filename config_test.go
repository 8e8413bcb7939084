package walex

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestNewValidates(t *testing.T) {
	base := Config{URL: "postgres://u:pw@localhost/app", Name: "app", Publication: "events", Subscriptions: []string{"users"}}
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"Name", func(c *Config) { c.Name = "" }},
		{"Publication", func(c *Config) { c.Publication = "" }},
		{"Subscriptions", func(c *Config) { c.Subscriptions = nil }},
		{"Subscriptions", func(c *Config) { c.Subscriptions = []string{"a.b.c"} }},
		{"Subscriptions", func(c *Config) { c.Subscriptions = []string{`"unterminated`} }},
		{"SlotName", func(c *Config) { c.SlotName = "Bad-Name" }},
		{"SlotName", func(c *Config) { c.SlotName = strings.Repeat("a", 60) }},
		{"URL", func(c *Config) { c.URL = "postgres://u:pw@localhost:notaport/app" }},
		{"URL", func(c *Config) { c.Host = "other" }},
		{"URL", func(c *Config) { c.URL = "postgres://u:pw@localhost" }},
		{"Database", func(c *Config) { c.URL = ""; c.Host = "localhost"; c.Database = "" }},
		{"MaxBatchEvents", func(c *Config) { c.MaxBatchEvents = -1 }},
		{"Transfer", func(c *Config) { c.Transfer = TransferBinary + 1 }},
		{"ReadCoalesce", func(c *Config) { c.ReadCoalesce = time.Second }},
	}
	for _, tc := range cases {
		cfg := base
		tc.edit(&cfg)
		_, err := New(cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("New(%s edited) = %v, want *ConfigError for field %s", tc.field, err, tc.field)
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Errorf("error %q shows the password", err)
		}
	}
	if _, err := New(base); err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
}

func TestConfigNeverShowsPassword(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	cfgs := []Config{
		{URL: "postgres://app:" + pw + "@db.example:5432/app?sslmode=require", Name: "a", Publication: "p", Subscriptions: []string{"t"}},
		{URL: "host=db user=app password=" + pw + " dbname=app", Name: "a", Publication: "p", Subscriptions: []string{"t"}},
		{URL: "postgres://app@db/app?password=" + pw, Name: "a", Publication: "p", Subscriptions: []string{"t"}},
		{Host: "db", User: "app", Password: pw, Database: "app", Name: "a", Publication: "p", Subscriptions: []string{"t"}},
	}
	cc, err := pgconn.ParseConfig("host=db user=app dbname=app password=" + pw)
	if err != nil {
		t.Fatal(err)
	}
	cfgs = append(cfgs, Config{ConnConfig: cc, Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	for i, cfg := range cfgs {
		var logged bytes.Buffer
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
		slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
		for _, s := range []string{cfg.String(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), logged.String()} {
			if strings.Contains(s, pw) {
				t.Errorf("config %d: password shown in %q", i, s)
			}
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("config %d: New = %v", i, err)
		}
		if c.config().conn.Password != pw {
			t.Errorf("config %d: password not passed to the connection", i)
		}
	}
	// A URL that cannot be parsed must not echo its password.
	_, err = New(Config{URL: "postgres://app:" + pw + "@db:notaport/app", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("bad URL error = %v", err)
	}
}

func TestURLOptionsHonoured(t *testing.T) {
	c, err := New(Config{URL: "postgres://u@h:6543/app?sslmode=disable&application_name=x&connect_timeout=7", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	cc := c.config().conn
	if cc.TLSConfig != nil || cc.Port != 6543 || cc.RuntimeParams["application_name"] != "x" || cc.ConnectTimeout.Seconds() != 7 {
		t.Errorf("conn config = TLS %v port %d params %v timeout %v", cc.TLSConfig, cc.Port, cc.RuntimeParams, cc.ConnectTimeout)
	}
	c, err = New(Config{URL: "postgres://u@h/app?sslmode=require", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.config().conn.TLSConfig == nil {
		t.Error("sslmode=require: no TLS config")
	}
}

func TestDefaultSlotName(t *testing.T) {
	for in, want := range map[string]string{"myapp": "myapp_walex", "My App-2": "my_app_2_walex", "Ünïcode": "_n_code_walex"} {
		if got := DefaultSlotName(in); got != want {
			t.Errorf("DefaultSlotName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTableName(t *testing.T) {
	ok := map[string]tableName{
		"users":              {"public", "users"},
		"app.todos":          {"app", "todos"},
		"Order Items":        {"public", "Order Items"},
		`"my.schema"."a""b"`: {"my.schema", `a"b`},
		`Sales."Q1 Report"`:  {"Sales", "Q1 Report"},
		`"UPPER"`:            {"public", "UPPER"},
	}
	for in, want := range ok {
		got, err := parseTableName(in)
		if err != nil || got != want {
			t.Errorf("parseTableName(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a.b.c", `"x`, `"x"y`, "a..b", "*", "a\x00b"} {
		if got, err := parseTableName(in); err == nil {
			t.Errorf("parseTableName(%q) = %v, want error", in, got)
		}
	}
}

func TestRegistrationPanics(t *testing.T) {
	c, err := New(Config{URL: "postgres://u@h/app", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	h := func(ctx context.Context, events []Event) error { return nil }
	for name, f := range map[string]func(){
		"nil handler":         func() { c.OnInsert("t", nil) },
		"empty table":         func() { c.OnUpdate("", h) },
		"AllTables on insert": func() { c.OnInsert(AllTables, h) },
		"nil function":        func() { c.OnDelete("t", h, WithFunctions(nil)) },
		"nil middleware":      func() { c.Use(nil) },
	} {
		func() {
			defer func() {
				v := recover()
				if v == nil {
					t.Errorf("%s: no panic", name)
					return
				}
				if s := fmt.Sprint(v); !strings.HasPrefix(s, "walex: ") {
					t.Errorf("%s: panic %q does not say it is walex", name, s)
				}
			}()
			f()
		}()
	}
}

func TestRetryPolicyDelay(t *testing.T) {
	p := RetryPolicy{}.withDefaults(5, 100*1e6, 1e9)
	var got []int64
	for n := 1; n <= 6; n++ {
		got = append(got, int64(p.delay(n))/1e6)
	}
	if fmt.Sprint(got) != "[100 200 400 800 1000 1000]" {
		t.Errorf("delays (ms) = %v", got)
	}
}

// TestFieldsAsDSN checks that the discrete fields make the configuration
// the equivalent DSN makes, TLS and fallbacks included, with libpq's
// environment variables filling what they leave out.
func TestFieldsAsDSN(t *testing.T) {
	t.Setenv("PGSSLMODE", "require")
	t.Setenv("PGAPPNAME", "from-env")
	fields, err := New(Config{Host: "db.internal", Port: 6432, User: "o'brien", Password: `p\w 'x`, Database: "app", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	url, err := New(Config{URL: `host=db.internal port=6432 user='o\'brien' password='p\\w \'x' dbname=app`, Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	f, u := fields.config().conn, url.config().conn
	if f.Host != u.Host || f.Port != u.Port || f.User != "o'brien" || f.User != u.User || f.Password != `p\w 'x` || f.Password != u.Password || f.Database != u.Database {
		t.Errorf("fields = %s:%d %q %q %q, DSN = %s:%d %q %q %q", f.Host, f.Port, f.User, f.Password, f.Database, u.Host, u.Port, u.User, u.Password, u.Database)
	}
	if f.TLSConfig == nil || f.TLSConfig.ServerName != "db.internal" || len(f.Fallbacks) != len(u.Fallbacks) {
		t.Errorf("fields: TLS %v, %d fallbacks; DSN: %d fallbacks; want TLS for db.internal (PGSSLMODE=require) as the DSN has it", f.TLSConfig, len(f.Fallbacks), len(u.Fallbacks))
	}
	if f.RuntimeParams["application_name"] != "from-env" {
		t.Errorf("PGAPPNAME not applied to the fields: %v", f.RuntimeParams)
	}

	t.Setenv("PGSSLMODE", "")
	prefer, err := New(Config{Host: "db.internal", Database: "app", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	if cc := prefer.config().conn; cc.TLSConfig == nil || len(cc.Fallbacks) == 0 || cc.Fallbacks[0].TLSConfig != nil {
		t.Errorf("default sslmode: TLS %v, fallbacks %v; want prefer: TLS first, then plaintext", cc.TLSConfig, cc.Fallbacks)
	}
}

func TestConnConfig(t *testing.T) {
	cc, err := pgconn.ParseConfig("host=h dbname=app sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cc.TLSConfig = &tls.Config{ServerName: "h", MinVersion: tls.VersionTLS13}
	c, err := New(Config{ConnConfig: cc, Name: "a", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	got := c.config().conn
	if got == cc || got.TLSConfig == cc.TLSConfig || got.TLSConfig.MinVersion != tls.VersionTLS13 {
		t.Errorf("ConnConfig not copied with its tls.Config: %p %p", got, cc)
	}
	for name, cfg := range map[string]Config{
		"with URL":          {ConnConfig: cc, URL: "postgres://h/app"},
		"with a field":      {ConnConfig: cc, Host: "h"},
		"not ParseConfig's": {ConnConfig: &pgconn.Config{Host: "h", Database: "app"}},
	} {
		cfg.Name, cfg.Publication, cfg.Subscriptions = "a", "p", []string{"t"}
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ConnConfig") {
			t.Errorf("%s: New() = %v, want an error about ConnConfig", name, err)
		}
	}
}

// TestUpdateConfigKeepsDefaults checks that UpdateConfig hands over the
// Config as given: a default that depends on another field follows it.
func TestUpdateConfigKeepsDefaults(t *testing.T) {
	c, err := New(Config{URL: "postgres://h/app", Name: "first", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.UpdateConfig(func(cfg *Config) {
		if cfg.SlotName != "" || cfg.StatusInterval != 0 {
			t.Errorf("UpdateConfig handed over defaults: SlotName %q, StatusInterval %v", cfg.SlotName, cfg.StatusInterval)
		}
		cfg.Name = "second"
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.config().SlotName; got != "second_walex" {
		t.Errorf("slot name after renaming = %q, want second_walex", got)
	}
	if err := c.AddSubscriptions("u"); err != nil {
		t.Fatal(err)
	}
	_ = c.UpdateConfig(func(cfg *Config) {
		if !slices.Equal(cfg.Subscriptions, []string{"public.t", "public.u"}) {
			t.Errorf("UpdateConfig handed over subscriptions %v, want the current ones", cfg.Subscriptions)
		}
	})
}
