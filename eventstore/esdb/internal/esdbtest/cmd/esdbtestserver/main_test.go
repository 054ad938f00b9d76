package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/esdb"
)

// TestRunServesTheStore: the command prints a connection string on which
// the esdb adapter works.
func TestRunServesTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", pw); _ = pw.Close() }()

	lines := bufio.NewScanner(pr)
	var url string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "url "); ok {
			url = u
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		t.Fatal("no url line")
	}
	st, err := esdb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id := eventstore.EventID{1}
	res, err := st.Append(ctx, "order-1", eventstore.NoStream(), eventstore.EventData{ID: id, Type: "Paid", ContentType: "application/json", Data: []byte(`{}`)})
	if err != nil || res.NextExpected != 0 {
		t.Fatalf("Append = %+v, %v", res, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
