package walex

import (
	"context"
	"fmt"
	"time"
)

// AddSubscriptions subscribes to more tables; it takes effect from the
// next transaction the client decodes. Invalid names are reported and
// nothing is changed. With Config.CreatePublication, the tables are added
// to the publication at once when Run is running (otherwise when it
// starts).
func (c *Client) AddSubscriptions(tables ...string) error {
	if err := c.changeSubs(tables, true); err != nil {
		return err
	}
	cfg := c.config()
	if !cfg.CreatePublication || !c.running.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cat := &catalog{cfg: cfg.conn}
	defer cat.close()
	return cat.ensurePublication(ctx, cfg.Publication, c.subscribed(), c.logger())
}

// RemoveSubscriptions unsubscribes from tables; it takes effect from the
// next transaction.
func (c *Client) RemoveSubscriptions(tables ...string) error {
	return c.changeSubs(tables, false)
}

func (c *Client) changeSubs(tables []string, add bool) error {
	var parsed []tableName
	for _, s := range tables {
		t, err := parseTableName(s)
		if err != nil {
			return &ConfigError{Field: "Subscriptions", Reason: fmt.Sprintf("entry %q: %v", s, err)}
		}
		parsed = append(parsed, t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := *c.cfg
	cfg.subs = nil
	cfg.Subscriptions = nil
	cur := *c.subs.Load()
	next := make(map[tableName]bool, len(cur))
	for t := range cur {
		next[t] = true
	}
	for _, t := range parsed {
		if add {
			next[t] = true
		} else {
			delete(next, t)
		}
	}
	for _, t := range c.cfg.subs {
		if next[t] {
			cfg.subs = append(cfg.subs, t)
		}
	}
	for _, t := range parsed {
		if add && !containsTable(cfg.subs, t) {
			cfg.subs = append(cfg.subs, t)
		}
	}
	for _, t := range cfg.subs {
		cfg.Subscriptions = append(cfg.Subscriptions, t.String())
	}
	c.cfg = &cfg
	c.subs.Store(&next)
	return nil
}

// setSubs publishes the set of subscribed tables that the decoder and the
// dispatcher read without a lock.
func (c *Client) setSubs(list []tableName) {
	m := make(map[tableName]bool, len(list))
	for _, t := range list {
		m[t] = true
	}
	c.subs.Store(&m)
}

// subscribed returns the current subscriptions, in the order they were
// configured and added.
func (c *Client) subscribed() []tableName {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tableName(nil), c.cfg.subs...)
}

// isSubscribed reports whether the table is subscribed now.
func (c *Client) isSubscribed(schema, table string) bool {
	return (*c.subs.Load())[tableName{Schema: schema, Table: table}]
}
