// Command ledger is the orderledger binary: an event-sourced order ledger
// for merchants who take WeChat Pay.
//
//	ledger serve    run the HTTP server (notifications, orders API, reads)
//	ledger demo     run the whole job end to end on a throw-away ledger
//	ledger rebuild  rebuild the read model (projections) from the events
//	ledger loadgen  measure notifies per second and latency
//	ledger help     explain a command
//
// main only sets up the signal context and exits with Main's code; Main is
// what the tests call.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
