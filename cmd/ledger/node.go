package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/cmd/internal/httpapi"
	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/esdb"
	"github.com/orderledger/orderledger/eventstore/sqlite"
	"github.com/orderledger/orderledger/projections"
)

// nodeConfig is everything a running ledger needs.
type nodeConfig struct {
	Addr      string // listen address; "127.0.0.1:0" picks a free port
	DataDir   string
	StoreURL  string // "" = embedded SQLite in DataDir
	Merchants *merchant.Registry
	Logger    *slog.Logger
	Now       func() time.Time
	// Store, when set, is used instead of opening one (tests inject a
	// failing store this way). The node closes it.
	Store eventstore.Store
}

// node is one running ledger: event store, projections runner, HTTP server.
type node struct {
	cfg    nodeConfig
	store  eventstore.Store
	rm     *projections.ReadModel
	runner *projections.Runner
	api    *httpapi.Server
	srv    *http.Server
	ln     net.Listener
	lock   *os.File

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex // guards runErr
	runErr   error      // why the projections runner stopped, if it did
	closeErr error
	once     sync.Once
}

const (
	eventsFile    = "events.db"
	readModelFile = "readmodel.db"
	lockFile      = "ledger.lock"
)

// lockData takes an exclusive lock on the data folder so two ledgers never
// share it. The kernel drops the lock when the process dies, even on kill -9.
func lockData(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data folder %s is in use by another ledger process (%w)", dir, err)
	}
	return f, nil
}

// isESDB reports whether url names an EventStoreDB/KurrentDB connection.
func isESDB(url string) bool {
	for _, p := range []string{"esdb://", "esdb+discover://", "kurrentdb://", "kurrentdb+discover://", "kdb://", "kdb+discover://"} {
		if strings.HasPrefix(url, p) {
			return true
		}
	}
	return false
}

// openStore opens the configured event store.
func openStore(ctx context.Context, dataDir, url string) (eventstore.Store, error) {
	switch {
	case url == "" || url == "sqlite":
		s, err := sqlite.Open(filepath.Join(dataDir, eventsFile))
		if err != nil {
			return nil, fmt.Errorf("open embedded store: %w", err)
		}
		return s, nil
	case isESDB(url):
		s, err := esdb.Open(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("open EventStoreDB store: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: --store %q: want empty (embedded) or esdb://host:port?tls=false", errUsage, url)
}

// startNode opens everything and starts serving. Close it when done.
func startNode(ctx context.Context, cfg nodeConfig) (_ *node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Configuration first: a bad key must not touch the data folder.
	v3, err := buildV3Verifiers(cfg.Merchants, cfg.Now)
	if err != nil {
		return nil, err
	}
	n := &node{cfg: cfg}
	defer func() {
		if err != nil {
			n.Close(context.Background())
		}
	}()
	if n.lock, err = lockData(cfg.DataDir); err != nil {
		return nil, err
	}
	n.store = cfg.Store
	if n.store == nil {
		if n.store, err = openStore(ctx, cfg.DataDir, cfg.StoreURL); err != nil {
			return nil, err
		}
	}
	if n.rm, err = projections.OpenReadModel(filepath.Join(cfg.DataDir, readModelFile)); err != nil {
		return nil, fmt.Errorf("open read model: %w", err)
	}
	n.runner = projections.NewRunner(n.store, n.rm)
	ledger := app.New(n.store, app.WithClock(cfg.Now))
	n.api = httpapi.New(httpapi.Config{
		Ledger: ledger, Merchants: cfg.Merchants, Views: n.rm, Follower: n.runner,
		Logger: cfg.Logger, Now: cfg.Now, Ready: n.ready, V3: v3,
	})
	n.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	n.srv = &http.Server{
		Handler:           n.api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.runner.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			cfg.Logger.Error("projections stopped", "err", err)
			n.mu.Lock()
			n.runErr = err
			n.mu.Unlock()
		}
	}()
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("http server stopped", "err", err)
		}
	}()
	cfg.Logger.Info("ledger serving", "addr", n.ln.Addr().String(), "data", cfg.DataDir,
		"store", n.store.Features().Name, "merchants", cfg.Merchants.IDs())
	return n, nil
}

// URL is the base URL of the HTTP server.
func (n *node) URL() string { return "http://" + n.ln.Addr().String() }

// ready backs /readyz: the projections must be running and the store must
// answer a read.
func (n *node) ready(ctx context.Context) error {
	n.mu.Lock()
	err := n.runErr
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("projections stopped: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = n.store.ReadAll(ctx, eventstore.Start, 1)
	return err
}

// Close shuts down gracefully: stop taking requests, let those in flight
// finish (their appends complete and get their replies), stop the
// projections, then close the read model and the store.
func (n *node) Close(ctx context.Context) error {
	n.once.Do(func() {
		var errs []error
		if n.srv != nil {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			errs = append(errs, n.srv.Shutdown(sctx))
			cancel()
		} else if n.ln != nil {
			n.ln.Close()
		}
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		if n.rm != nil {
			errs = append(errs, n.rm.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		if n.lock != nil {
			errs = append(errs, n.lock.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
