package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"modernc.org/sqlite"

	"github.com/orderledger/orderledger/eventstore"
)

// rebuildPage is how many events Rebuild reads, and applies in one
// transaction, at a time.
const rebuildPage = 1000

// Rebuild builds the read model at path from zero by replaying the whole
// log (ReadAll, in pages) into a temporary file next to it, path+".rebuild",
// then atomically renames that over path. A crash or an error before the
// rename leaves the old model untouched (a stale temporary file is removed
// by the next Rebuild); after it, the new model is complete.
//
// The server must not be running on the same read model: Rebuild takes the
// lock path+".lock" for its whole duration and fails with ErrLocked while a
// ReadModel holds it (where flock is available; elsewhere stop the server
// first). Events appended during a rebuild are picked up by the next Run,
// from the rebuilt checkpoint.
func Rebuild(ctx context.Context, store eventstore.Store, path string) (err error) {
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	defer lock.unlock()

	tmp := path + ".rebuild"
	if err := removeDB(tmp); err != nil {
		return fmt.Errorf("rebuild %s: remove stale %s: %w", path, tmp, err)
	}
	defer func() {
		if err != nil {
			removeDB(tmp) // best effort; the next Rebuild removes it anyway
		}
	}()

	// The temporary file needs no durability until it is complete: a crash
	// throws it away. A rollback journal in memory keeps the -wal/-journal
	// files out of the picture; the file is fsynced before the rename.
	rm, err := openFile(tmp, "_journal_mode=MEMORY&_synchronous=OFF")
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	err = replay(ctx, store, rm)
	if cerr := rm.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}

	// The old model may have a -wal file holding committed transactions
	// (the server was stopped abruptly). A -wal left next to the new file
	// would be replayed INTO it and corrupt it, and deleting it while the
	// old file still needs it would corrupt the old model if we crash before
	// the rename. So first fold the old -wal into the old file (leaving WAL
	// mode deletes it), then remove whatever is left, then rename.
	if err := settleOld(path); err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	if err := removeFiles(path, "-wal", "-shm", "-journal"); err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("rebuild %s: %w", path, err)
	}
	return nil
}

// replay applies the whole log to rm, a page (one transaction) at a time.
func replay(ctx context.Context, store eventstore.Store, rm *ReadModel) error {
	after := eventstore.Start
	for {
		events, err := store.ReadAll(ctx, after, rebuildPage)
		if err != nil {
			return fmt.Errorf("read after %s: %w", after, err)
		}
		if len(events) == 0 {
			return nil
		}
		last := events[len(events)-1].Position
		if err := rm.apply(ctx, events, last); err != nil {
			return err
		}
		after = last
	}
}

// settleOld checkpoints the WAL of the old model at path into the file and
// takes it out of WAL mode, so that the file alone is the whole old model.
// A missing file is fine. A file SQLite cannot open as a database is being
// replaced anyway, so that is not an error either.
func settleOld(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	conn, err := sqlite.NewConnector(path + "?_busy_timeout=10000")
	if err != nil {
		return fmt.Errorf("settle old model: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode=DELETE").Scan(&mode); err != nil {
		var serr *sqlite.Error
		if errors.As(err, &serr) && (serr.Code()&0xff == sqliteNotADB || serr.Code()&0xff == sqliteCorrupt) {
			return nil
		}
		return fmt.Errorf("settle old model: %w", err)
	}
	return db.Close()
}

// SQLite primary result codes (https://www.sqlite.org/rescode.html).
const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// removeDB removes a SQLite file and its companions; missing ones are fine.
func removeDB(path string) error { return removeFiles(path, "", "-journal", "-wal", "-shm") }

// removeFiles removes path+suffix for each suffix, in order; missing files
// are fine.
func removeFiles(path string, suffixes ...string) error {
	for _, suffix := range suffixes {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
