package projections

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

func seedStore(t *testing.T, store *memStore, n int) eventstore.Position {
	t.Helper()
	var last eventstore.Position
	for i := range n {
		otn := "R" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		appendTo(t, store, testMch, otn, placed(otn, int64(100+i), "2024-03-02 08:00:00"))
		last = appendTo(t, store, testMch, otn, paid(otn, "42"+otn, int64(100+i), 90, "2024-03-02 08:01:00"))
	}
	return last
}

func TestRebuildRefusesWhileOpen(t *testing.T) {
	_, path := openTestRM(t)
	err := Rebuild(context.Background(), newMemStore(time.Now), path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Rebuild under an open read model = %v, want ErrLocked", err)
	}
	if _, err := OpenReadModel(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenReadModel = %v, want ErrLocked", err)
	}
}

// copyFile copies src to dst if src exists.
func copyFile(t *testing.T, src, dst string) bool {
	t.Helper()
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return true
}

// crashedCopy makes, at dst, what a server killed right now would leave:
// the database file and its -wal with committed but not checkpointed
// transactions.
func crashedCopy(t *testing.T, src, dst string) {
	t.Helper()
	copyFile(t, src, dst)
	if !copyFile(t, src+"-wal", dst+"-wal") {
		t.Fatal("no -wal file to copy; the test would not exercise the stale WAL case")
	}
}

func TestRebuildOverCrashedModel(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Date(2024, 3, 2, 2, 0, 0, 0, time.UTC))
	store := newMemStore(clock.Now)
	first := seedStore(t, store, 30)

	live, livePath := openTestRM(t)
	catchUp(t, store, live, first)
	oldDump := dump(t, live)

	path := filepath.Join(t.TempDir(), "readmodel.db")
	crashedCopy(t, livePath, path)

	// A rebuild that fails halfway leaves the old model as it was.
	failing := &failingReadAll{memStore: store, after: 10}
	if err := Rebuild(ctx, failing, path); !errors.Is(err, errInjected) {
		t.Fatalf("Rebuild = %v, want the injected failure", err)
	}
	if _, err := os.Stat(path + ".rebuild"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	old, err := OpenReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := dump(t, old); got != oldDump {
		t.Fatalf("failed rebuild damaged the old model: %s", diffLines(oldDump, got))
	}
	old.Close()
	crashedCopy(t, livePath, path) // crashed again, -wal and all

	// More events, then a successful rebuild over the crashed model.
	clock.Advance(24 * time.Hour)
	appendTo(t, store, testMch, "RAa", domain.RefundSucceeded{Refund: refund("RAa", "42RAa", "5000001", 50, domain.RefundStatusSuccess, "2024-03-03 10:00:00")})
	end := appendTo(t, store, testMch, "NEW", placed("NEW", 7, "2024-03-03 11:00:00"))
	if err := Rebuild(ctx, store, path); err != nil {
		t.Fatal(err)
	}
	for _, leftover := range []string{path + ".rebuild", path + "-wal", path + "-shm"} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", filepath.Base(leftover), err)
		}
	}

	// The rebuilt model equals the live one brought up to date incrementally.
	catchUp(t, store, live, end)
	rebuilt, err := OpenReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rebuilt.Close()
	if a, b := dump(t, live), dump(t, rebuilt); a != b {
		t.Fatalf("rebuilt model differs: %s", diffLines(a, b))
	}
	var mode string
	if err := rebuilt.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}

	// And the runner continues from the rebuilt checkpoint.
	last := appendTo(t, store, testMch, "NEW", paid("NEW", "4299", 7, 7, "2024-03-03 11:01:00"))
	catchUp(t, store, rebuilt, last)
	if v, _, _ := rebuilt.Order(ctx, testMch, "NEW"); v.Status != domain.StatusPaid {
		t.Fatalf("after rebuild and run: %+v", v)
	}
}

func TestRebuildOverGarbageAndNothing(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	end := seedStore(t, store, 3)
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.db")
	if err := Rebuild(ctx, store, fresh); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte("this is not a database, it is a 64-byte long text file......"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(ctx, store, garbage); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fresh, garbage} {
		rm, err := OpenReadModel(p)
		if err != nil {
			t.Fatal(err)
		}
		if cp, _ := rm.Checkpoint(ctx); cp != end {
			t.Errorf("%s: checkpoint %s, want %s", p, cp, end)
		}
		rm.Close()
	}
}

// failingReadAll fails ReadAll after some events.
type failingReadAll struct {
	*memStore
	after int
}

func (f *failingReadAll) ReadAll(ctx context.Context, after eventstore.Position, max int) ([]eventstore.RecordedEvent, error) {
	if !after.Less(memPos(f.after)) {
		return nil, errInjected
	}
	return f.memStore.ReadAll(ctx, after, min(max, 3))
}
