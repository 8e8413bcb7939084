package walex

import "fmt"

// Option configures one handler registration: WithFilters,
// WithFunctions, WithConcurrency, WithName.
type Option interface {
	apply(*registration)
}

// optionFunc is an Option made of a function.
type optionFunc func(*registration)

func (f optionFunc) apply(r *registration) { f(r) }

// WithFilters drops events before the handler sees them; see Filters.
func WithFilters(f Filters) Option {
	return optionFunc(func(r *registration) { r.filters = f })
}

// WithFunctions runs each function for each event that passed the
// filters, after the handler returned nil. The functions of one call run
// concurrently on a bounded pool (WithConcurrency, default 8), and the call
// waits for all of them: an error or panic in any function fails the call
// like a handler error, and the whole call (handler and functions) is
// retried. Functions must therefore be safe for concurrent use and
// idempotent.
func WithFunctions(fns ...Function) Option {
	return optionFunc(func(r *registration) {
		for _, f := range fns {
			if f == nil {
				panic("walex: WithFunctions: nil function")
			}
		}
		r.functions = append(r.functions, fns...)
	})
}

// WithConcurrency sets how many functions of one handler call run at once.
func WithConcurrency(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("walex: WithConcurrency(%d): must be at least 1", n))
	}
	return optionFunc(func(r *registration) { r.concurrency = n })
}

// WithName names the registration in logs and errors (default: the
// handler function's name).
func WithName(name string) Option {
	return optionFunc(func(r *registration) { r.name = name })
}
