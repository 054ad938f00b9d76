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
func benchEvents(b *testing.B, n int) []eventstore.RecordedEvent {
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
				FeeType: "CNY", Description: "bench", PlacedAt: at.In(Beijing)}
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
