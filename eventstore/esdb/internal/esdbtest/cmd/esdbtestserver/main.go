// Command esdbtestserver runs the esdbtest TEST DOUBLE of an EventStoreDB
// node (see package esdbtest: it is not EventStoreDB) so that a process such
// as `ledger serve --store esdb://...` can be tried without a real server.
//
//	go run ./eventstore/esdb/internal/esdbtest/cmd/esdbtestserver -addr 127.0.0.1:0
//
// It prints two lines, the listen address and a connection string:
//
//	addr 127.0.0.1:41234
//	url esdb://127.0.0.1:41234?tls=false
//
// and serves until it is interrupted or killed. Data lives in memory only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderledger/orderledger/eventstore/esdb/internal/esdbtest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "esdbtestserver:", err)
		os.Exit(1)
	}
}

// run serves on addr until ctx ends, after printing where.
func run(ctx context.Context, addr string, out io.Writer) error {
	srv, err := esdbtest.Start(addr)
	if err != nil {
		return err
	}
	defer srv.Close()
	if _, err := fmt.Fprintf(out, "addr %s\nurl esdb://%s?tls=false\n", srv.Addr(), srv.Addr()); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
