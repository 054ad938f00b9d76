package projections

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// benchEvents returns n recorded events over n/3 orders: each placed, paid
// (with a v2-sized evidence body) and partly refunded.
func benchEvents(b testing.TB, n int) []eventstore.RecordedEvent {
	body := "<xml>" + strings.Repeat("x", 700) + "</xml>"
	at := time.Date(2024, 3, 2, 2, 0, 0, 0, time.UTC)
	out := make([]eventstore.RecordedEvent, 0, n)
	revs := map[string]uint64{}
	for i := 0; len(out) < n; i++ {
		otn := fmt.Sprintf("B%08d", i/3)
		var e domain.Event
		switch i % 3 {
		case 0:
			e = domain.OrderPlaced{MchID: testMch, AppID: testAppID, OutTradeNo: otn, TotalFee: 1000,
				FeeType: "CNY", Description: "bench", PlacedAt: at.In(domain.Beijing)}
		case 1:
			p := payment(otn, "42"+otn, 1000, 900, "2024-03-02 10:00:00")
			p.Evidence.Body = body
			e = domain.PaymentConfirmed{Payment: p}
		case 2:
			r := refund(otn, "42"+otn, "50"+otn, 100, domain.RefundStatusSuccess, "2024-03-02 11:00:00")
			r.Evidence.Body = body
			e = domain.RefundSucceeded{Refund: r}
		}
		typ, data, err := domain.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		stream := domain.StreamID(testMch, otn)
		out = append(out, eventstore.RecordedEvent{StreamID: stream, ID: domain.ID(e), Type: typ,
			ContentType: "application/json", Data: data, Revision: revs[stream],
			Position: memPos(len(out) + 1), RecordedAt: at})
		revs[stream]++
	}
	return out
}

// BenchmarkApply measures applying batches of 1 and 256 events, each batch
// in one transaction with its checkpoint, on a file in WAL mode with
// synchronous=NORMAL:
//
//	go test -run '^$' -bench BenchmarkApply -benchtime 3s ./projections
func BenchmarkApply(b *testing.B) {
	for _, size := range []int{1, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			rm, _ := openTestRM(b)
			events := benchEvents(b, b.N*size)
			b.ResetTimer()
			for i := range b.N {
				batch := events[i*size : (i+1)*size]
				if err := rm.apply(ctx, batch, batch[len(batch)-1].Position); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkApplyPaidAfterPlaced has the shape of `ledger loadgen`'s distinct
// phase: in rounds, orders are placed (and projected) off the clock, then
// each batch carries one payment for each of as many distinct orders; so
// every event continues a row written by an earlier batch.
func BenchmarkApplyPaidAfterPlaced(b *testing.B) {
	const round = 8192 // orders placed, then paid, per round
	for _, size := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			rm, _ := openTestRM(b)
			n := b.N * size
			var places, pays []eventstore.RecordedEvent
			for i, ev := range benchEvents(b, 3*n) {
				switch i % 3 {
				case 0:
					places = append(places, ev)
				case 1:
					pays = append(pays, ev)
				}
			}
			// In the global log, each round's placements come before its
			// payments.
			for i := range n {
				r := i / round
				first := 2 * r * round           // position before the round
				inRound := min(round, n-r*round) // orders in this round
				places[i].Position = memPos(first + i%round + 1)
				pays[i].Position = memPos(first + inRound + i%round + 1)
			}
			b.ResetTimer()
			for i := range b.N {
				if lo := i * size; lo%round == 0 {
					b.StopTimer()
					for j := lo; j < min(n, lo+round); j += 512 {
						batch := places[j:min(n, lo+round, j+512)]
						if err := rm.apply(ctx, batch, batch[len(batch)-1].Position); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				batch := pays[i*size : (i+1)*size]
				if err := rm.apply(ctx, batch, batch[len(batch)-1].Position); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got, err := rm.Checkpoint(ctx); err != nil || got != pays[n-1].Position {
				b.Fatalf("checkpoint %s (%v), want %s", got, err, pays[n-1].Position)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
