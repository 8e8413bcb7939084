package main

import (
	"testing"

	"github.com/walex-go/walex/internal/demo"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestExample runs the example against a throwaway server.
func TestExample(t *testing.T) { demo.Test(t, setup, teardown, run) }
