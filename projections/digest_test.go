package projections

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// DigestFile tells a rebuilt model equal to the live one, and one event more
// different; a missing file is an empty model.
func TestDigestFile(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Date(2024, 3, 2, 2, 0, 0, 0, time.UTC))
	store := newMemStore(clock.Now)
	end := seedStore(t, store, 20)
	live, livePath := openTestRM(t)
	catchUp(t, store, live, end)

	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	if err := Rebuild(ctx, store, rebuilt); err != nil {
		t.Fatal(err)
	}
	a, err := DigestFile(ctx, livePath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DigestFile(ctx, rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.Orders == 0 || a.Checkpoint == "0" {
		t.Fatalf("live %+v, rebuilt %+v: want equal and non-empty", a, b)
	}

	more := appendTo(t, store, testMch, "DIGEST", placed("DIGEST", 9, "2024-03-02 12:00:00"))
	catchUp(t, store, live, more)
	c, err := DigestFile(ctx, livePath)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sum == a.Sum || c.Orders != a.Orders+1 {
		t.Fatalf("after one more order: %+v, before %+v", c, a)
	}

	none, err := DigestFile(ctx, filepath.Join(t.TempDir(), "missing.db"))
	if err != nil || none.Orders != 0 || none.Checkpoint != "0" {
		t.Fatalf("missing file: %+v, %v", none, err)
	}
}
