package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/orderledger/orderledger/projections"
)

func rebuildCommand() *command {
	c := &command{
		name:    "rebuild",
		summary: "rebuild the read model (order views, daily totals) from the stored events; the events are only read",
		usage:   "rebuild [--data ./ledger-data] [--store esdb://...]",
	}
	c.run = func(ctx context.Context, env *cliEnv, args []string) error {
		fs := newFlagSet(c, env)
		var sf storeFlags
		sf.register(fs, env)
		if err := parse(fs, args); err != nil {
			return err
		}
		if sf.store == "" {
			if _, err := os.Stat(filepath.Join(sf.data, eventsFile)); err != nil {
				return fmt.Errorf("no ledger in --data %s (%s not found)", sf.data, eventsFile)
			}
		}
		lock, err := lockData(sf.data)
		if err != nil {
			return fmt.Errorf("%w (stop `ledger serve` first: the read model is rebuilt in place)", err)
		}
		defer lock.Close()
		store, err := openStore(ctx, sf.data, sf.store)
		if err != nil {
			return err
		}
		defer store.Close()
		path := filepath.Join(sf.data, readModelFile)
		before, err := projections.DigestFile(ctx, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "rebuilding %s from %s events...\n", path, store.Features().Name)
		if err := projections.Rebuild(ctx, store, path); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		after, err := projections.DigestFile(ctx, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "done: %d orders, checkpoint %s\n", after.Orders, after.Checkpoint)
		switch {
		case before.Orders == 0 && before.Checkpoint == "0":
			fmt.Fprintln(env.stdout, "there was no read model before: nothing to compare")
		case before.Sum == after.Sum:
			fmt.Fprintln(env.stdout, "identical to the previous read model (same orders, totals and checkpoint)")
		default:
			fmt.Fprintf(env.stdout, "differs from the previous read model: before %d orders at checkpoint %s, after %d orders at %s\n",
				before.Orders, before.Checkpoint, after.Orders, after.Checkpoint)
		}
		return nil
	}
	return c
}
