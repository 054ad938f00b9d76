package main

import (
	"context"
	"fmt"
)

func loadgenCommand() *command {
	c := &command{name: "loadgen", summary: "measure verified notifies per second and latency", usage: "loadgen"}
	c.run = func(ctx context.Context, env *cliEnv, args []string) error {
		return fmt.Errorf("not yet")
	}
	return c
}
