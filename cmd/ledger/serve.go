package main

import (
	"context"
	"fmt"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
)

func serveCommand() *command {
	c := &command{
		name:    "serve",
		summary: "run the ledger's HTTP server: WeChat Pay notifications, orders API, reads",
		usage:   "serve [--addr 127.0.0.1:8080] [--data ./ledger-data] [--store esdb://...] --merchants merchants.json",
	}
	c.run = func(ctx context.Context, env *cliEnv, args []string) error {
		fs := newFlagSet(c, env)
		var sf storeFlags
		var lf logFlags
		sf.register(fs, env)
		lf.register(fs)
		addr := fs.String("addr", "127.0.0.1:8080", "listen address (host:port)")
		merchantsPath := fs.String("merchants", env.getenv("LEDGER_MERCHANTS"),
			"merchant config: JSON array of {mch_id, appid, api_key, apiv3_key, wechatpay_public_key_id, wechatpay_public_key}; key paths relative to the file; secrets may instead come from LEDGER_API_KEY_<mch_id> / LEDGER_APIV3_KEY_<mch_id> (env LEDGER_MERCHANTS)")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *merchantsPath == "" {
			return fmt.Errorf("%w: --merchants is required", errUsage)
		}
		logger, err := lf.logger(env.stderr)
		if err != nil {
			return err
		}
		reg, err := merchant.Load(*merchantsPath, env.getenv)
		if err != nil {
			return err
		}
		n, err := startNode(ctx, nodeConfig{Addr: *addr, DataDir: sf.data, StoreURL: sf.store, Merchants: reg, Logger: logger})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "ledger listening on %s (data %s)\n", n.URL(), sf.data)
		<-ctx.Done()
		logger.Info("shutting down: finishing requests in flight")
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Close(cctx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		logger.Info("stopped cleanly")
		return nil
	}
	return c
}
