package walex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
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
	_, err := New(Config{URL: "postgres://app:" + pw + "@db:notaport/app", Name: "a", Publication: "p", Subscriptions: []string{"t"}})
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
