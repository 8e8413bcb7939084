module github.com/walex-go/walex/plugins/otel

go 1.26

require github.com/walex-go/walex v0.0.0-00010101000000-000000000000

replace github.com/walex-go/walex => ../..
