package walex

import (
	"context"
	"fmt"
	"time"
)

// AddSubscriptions subscribes to more tables; it takes effect from the
// next transaction the client decodes. Invalid names are reported and
// nothing is changed. While Run runs, the tables are checked at once, as
// at start-up: a table that does not exist (ErrTableNotFound) or that the
// publication does not publish (ErrNotPublished, with the ALTER
// PUBLICATION to run) is reported and nothing is changed; with
// Config.CreatePublication, the tables are added to the publication
// instead. Otherwise they are checked when Run starts.
func (c *Client) AddSubscriptions(tables ...string) error {
	parsed, err := parseSubscriptions(tables)
	if err != nil {
		return err
	}
	if c.running.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.checkNewSubscriptions(ctx, c.config(), parsed); err != nil {
			return err
		}
	}
	c.changeSubs(parsed, true)
	return nil
}

// RemoveSubscriptions unsubscribes from tables; it takes effect from the
// next transaction.
func (c *Client) RemoveSubscriptions(tables ...string) error {
	parsed, err := parseSubscriptions(tables)
	if err != nil {
		return err
	}
	c.changeSubs(parsed, false)
	return nil
}

func parseSubscriptions(tables []string) ([]tableName, error) {
	var parsed []tableName
	for _, s := range tables {
		t, err := parseTableName(s)
		if err != nil {
			return nil, &ConfigError{Field: "Subscriptions", Reason: fmt.Sprintf("entry %q: %v", s, err)}
		}
		parsed = append(parsed, t)
	}
	return parsed, nil
}

func (c *Client) changeSubs(parsed []tableName, add bool) {
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
	cfg.user.Subscriptions = cfg.Subscriptions
	c.cfg = &cfg
	c.subs.Store(&next)
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
