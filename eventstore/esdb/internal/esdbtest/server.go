// Package esdbtest is a TEST DOUBLE of an EventStoreDB node: an in-process
// gRPC server registered on the EventStore-Client-Go module's own service
// interfaces (protos/streams, protos/serverfeatures), so that the esdb
// adapter can be exercised through the real client library and real gRPC on
// a machine that has no EventStoreDB server.
//
// It is not EventStoreDB. It implements only what the adapter uses, following
// the server's documented and source-visible rules:
//
//   - Append with expected revision any / no-stream / stream-exists / exact,
//     revisions from 0, atomic batches, and the server's idempotency check
//     (IndexWriter.CheckCommit): for an exact or no-stream expectation behind
//     the stream's end, the same IDs at expected+1... make the append an
//     idempotent success; a partial match ("corrupted idempotency") or a
//     different ID is WrongExpectedVersion; for any / stream-exists, every ID
//     already stored in the stream makes it idempotent. When expected equals
//     the current revision the events are written without looking at IDs,
//     exactly like the server (which therefore tolerates a repeated ID at a
//     new place). Wrong expectations are answered with the AppendResp
//     WrongExpectedVersion message (current and expected revision filled in,
//     new and 20.6.0 fields), which the client maps to
//     ErrorCodeWrongExpectedVersion.
//   - $all positions that are sparse and not a counter: every event is a
//     "prepare" record whose size depends on its content, and every append
//     ends with a "commit" record; an event's position is (commit position of
//     its append, its own prepare position), so events of one append share
//     Commit and differ in Prepare, and Commit > Prepare. The first event is
//     far from 0.
//   - Reads of a stream (forward and backward, StreamNotFound for a missing
//     stream) and of $all (forward from a position, inclusive; backward),
//     with optional stream-name or event-type filters (prefixes or regex).
//   - Catch-up subscriptions to $all: confirmation, events strictly after the
//     start position (exclusive, like the server), then live events; with a
//     filter, Checkpoint messages every MaxSearchWindow x multiplier
//     considered events and when the catch-up phase reaches the end, and a
//     CaughtUp message when it first reaches the end.
//   - The MaxAppendSize limit (the server's default, 1 MiB, counted as the
//     server does, as the encoded size of the proposed messages), refused
//     with gRPC InvalidArgument and the "maximum-append-size-exceeded"
//     trailer.
//   - ServerFeatures.GetSupportedMethods (version 24.10.0), so the client's
//     handshake runs as against a real node.
//
// Fault injection hooks let tests reproduce what a real cluster does: lose
// the reply of an append after it was committed (the TCP connection is cut),
// answer NotLeader (with the leader-endpoint trailers a follower sends, here
// pointing back at this server), answer Unavailable, drop subscriptions after
// some events, and stop and restart the whole node on the same address.
//
// Not implemented: stream subscriptions, deletes and tombstones, stream
// metadata and ACLs, persistent subscriptions, projections, gossip and
// cluster discovery, BatchAppend, TLS and authentication, the event-ID cache
// eviction of the real server (here every stored ID is remembered).
package esdbtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/orderledger/orderledger/eventstore"
)

// firstPosition is where the first user event lands in the log: a real node
// writes epoch and system records first, so user positions never start at 0.
const firstPosition = 1 << 12

// commitRecordSize is the size of the commit record that ends every append.
const commitRecordSize = 41

// maxMessage is the gRPC message limit in both directions; the client
// accepts 17 MiB messages and a node accepts events up to 16 MiB.
const maxMessage = 20 << 20

// DefaultMaxAppendSize is the server's default MaxAppendSize, the limit this
// double applies: the sum of the encoded sizes of the proposed messages of
// one append (1 MiB).
const DefaultMaxAppendSize = 1 << 20

// Record is an event as the test server stores it.
type Record struct {
	Stream      string
	ID          [16]byte
	Revision    uint64
	Type        string
	ContentType string
	Data        []byte
	Metadata    []byte
	Created     time.Time
	Commit      uint64 // position of the commit record of its append
	Prepare     uint64 // position of its own prepare record
}

// Server is the test double. Create it with Start; all methods are safe for
// concurrent use.
type Server struct {
	// mu guards every field below it.
	mu      sync.Mutex
	log     []*Record
	streams map[string][]*Record
	ids     map[[16]byte]*Record // last record stored under each ID
	next    uint64               // log position of the next record
	changed chan struct{}        // closed and replaced on every commit
	appends int                  // Append calls that reached the commit check
	commits int                  // appends that wrote events
	fired   Faults               // faults injected so far

	// fault injection, consumed one by one
	dropReplies   int
	notLeader     int
	unavailable   int
	dropSubsAfter int // 0: never

	// network
	addr    string
	lis     net.Listener
	grpcSrv *grpc.Server
	conns   map[string]net.Conn // by remote address
	stopped bool
}

// Start listens on addr ("127.0.0.1:0" for a free port) and serves until
// Close.
func Start(addr string) (*Server, error) {
	s := &Server{
		streams: map[string][]*Record{},
		ids:     map[[16]byte]*Record{},
		next:    firstPosition,
		changed: make(chan struct{}),
		conns:   map[string]net.Conn{},
	}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("esdbtest: listen %s: %w", addr, err)
	}
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.MaxSendMsgSize(maxMessage),
		// The client pings every 10 s even without active calls; the gRPC
		// default policy would answer with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	api.RegisterStreamsServer(srv, &streamsService{s: s})
	serverfeatures.RegisterServerFeaturesServer(srv, featuresService{})
	s.mu.Lock()
	s.addr = lis.Addr().String()
	s.lis = lis
	s.grpcSrv = srv
	s.stopped = false
	s.mu.Unlock()
	go func() { _ = srv.Serve(&trackingListener{Listener: lis, s: s}) }()
	return nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// ConnString is the connection string for the adapter and the client:
// insecure, single node, quick to give up discovery when the node is down.
func (s *Server) ConnString() string {
	return "esdb://" + s.Addr() + "?tls=false&maxDiscoverAttempts=2&discoveryInterval=20&gossipTimeout=1"
}

// Stop takes the node down abruptly: the listener and every connection are
// closed, streaming calls end with an error. The data is kept for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.grpcSrv
	s.stopped = true
	s.conns = map[string]net.Conn{} // Stop closes them all
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Restart brings a stopped node back on the same address with its data.
func (s *Server) Restart() error {
	s.mu.Lock()
	addr, stopped := s.addr, s.stopped
	s.mu.Unlock()
	if !stopped {
		return errors.New("esdbtest: restart of a running server")
	}
	var err error
	// The port may take a moment to be free again after the abrupt stop.
	for range 50 {
		if err = s.listen(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// DropNextAppendReplies makes the next n appends commit their events and then
// lose the reply: the client's TCP connection is cut, so the client sees the
// outcome as unknown.
func (s *Server) DropNextAppendReplies(n int) {
	s.mu.Lock()
	s.dropReplies += n
	s.mu.Unlock()
}

// NotLeaderNext makes the next n appends fail, before any check, the way a
// follower answers: gRPC NotFound with the "not-leader" exception trailer and
// the leader's endpoint (this very server), so the client reconnects.
func (s *Server) NotLeaderNext(n int) {
	s.mu.Lock()
	s.notLeader += n
	s.mu.Unlock()
}

// UnavailableNext makes the next n appends fail with gRPC Unavailable before
// writing anything ("server is not ready").
func (s *Server) UnavailableNext(n int) {
	s.mu.Lock()
	s.unavailable += n
	s.mu.Unlock()
}

// DropSubscriptionsAfter makes every subscription started from now on end
// with gRPC Unavailable after it has sent k events (0 turns it off).
func (s *Server) DropSubscriptionsAfter(k int) {
	s.mu.Lock()
	s.dropSubsAfter = k
	s.mu.Unlock()
}

// Stats are counters for tests.
type Stats struct {
	Appends int // Append calls that reached the commit check
	Commits int // appends that wrote events
	Events  int // events stored
	Faults  Faults
}

// Faults counts the faults the server injected.
type Faults struct {
	RepliesDropped       int
	NotLeader            int
	Unavailable          int
	SubscriptionsDropped int
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Appends: s.appends, Commits: s.commits, Events: len(s.log), Faults: s.fired}
}

// AppendDirect stores events as if another writer had appended them with
// expected revision any. It is meant for seeding system events and foreign
// streams in tests.
func (s *Server) AppendDirect(stream string, events ...Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commitLocked(stream, events)
}

// commitLocked writes events at the end of stream and returns them.
func (s *Server) commitLocked(stream string, events []Record) []*Record {
	cur := uint64(len(s.streams[stream]))
	now := time.Now().UTC()
	out := make([]*Record, len(events))
	for i := range events {
		r := events[i]
		r.Stream = stream
		r.Revision = cur + uint64(i)
		r.Created = now
		r.Prepare = s.next
		s.next += uint64(96 + len(stream) + len(r.Type) + len(r.Data) + len(r.Metadata))
		out[i] = &r
	}
	commit := s.next
	s.next += commitRecordSize
	for _, r := range out {
		r.Commit = commit
		s.log = append(s.log, r)
		s.streams[stream] = append(s.streams[stream], r)
		s.ids[r.ID] = r
	}
	s.commits++
	close(s.changed)
	s.changed = make(chan struct{})
	return out
}

// trackingListener remembers connections by remote address so that a fault
// can cut the one an append came on.
type trackingListener struct {
	net.Listener
	s *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.conns[c.RemoteAddr().String()] = c
	l.s.mu.Unlock()
	return c, nil
}

// cutConnection closes the TCP connection a call came on.
func (s *Server) cutConnection(ctx context.Context) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return
	}
	s.mu.Lock()
	c := s.conns[p.Addr.String()]
	delete(s.conns, p.Addr.String())
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// featuresService answers the client's handshake.
type featuresService struct {
	serverfeatures.UnimplementedServerFeaturesServer
}

func (featuresService) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const streams = "event_store.client.streams.streams"
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: "24.10.0",
		Methods: []*serverfeatures.SupportedMethod{
			{ServiceName: streams, MethodName: "read"},
			{ServiceName: streams, MethodName: "append"},
		},
	}, nil
}

// streamsService implements streams.Streams.
type streamsService struct {
	api.UnimplementedStreamsServer
	s *Server
}

// expectation is the decoded expected revision of an append.
type expectation struct {
	kind string // "any", "no_stream", "stream_exists", "revision"
	rev  uint64
}

func (st *streamsService) Append(stream api.Streams_AppendServer) error {
	s := st.s
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "first append message must carry the options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	if name == "" {
		return status.Error(codes.InvalidArgument, "empty stream name")
	}
	var exp expectation
	switch o := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Any:
		exp.kind = "any"
	case *api.AppendReq_Options_NoStream:
		exp.kind = "no_stream"
	case *api.AppendReq_Options_StreamExists:
		exp.kind = "stream_exists"
	case *api.AppendReq_Options_Revision:
		exp.kind, exp.rev = "revision", o.Revision
	default:
		return status.Error(codes.InvalidArgument, "missing expected stream revision")
	}
	const limit = DefaultMaxAppendSize
	var events []Record
	size := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pm := msg.GetProposedMessage()
		if pm == nil {
			return status.Error(codes.InvalidArgument, "expected a proposed message")
		}
		if size += proto.Size(pm); size > limit {
			stream.SetTrailer(metadata.Pairs(
				"exception", "maximum-append-size-exceeded",
				"maximum-append-size", strconv.Itoa(limit),
			))
			return status.Errorf(codes.InvalidArgument, "Maximum Append Size of %d Exceeded.", limit)
		}
		id, err := uuidFromProto(pm.GetId())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		typ, okType := pm.GetMetadata()["type"]
		ct, okCT := pm.GetMetadata()["content-type"]
		if !okType || !okCT {
			return status.Error(codes.InvalidArgument, "required metadata properties are missing: type, content-type")
		}
		events = append(events, Record{ID: id, Type: typ, ContentType: ct, Data: pm.GetData(), Metadata: pm.GetCustomMetadata()})
	}

	s.mu.Lock()
	if s.notLeader > 0 {
		s.notLeader--
		s.fired.NotLeader++
		host, port, _ := net.SplitHostPort(s.addr)
		s.mu.Unlock()
		stream.SetTrailer(metadata.Pairs(
			"exception", "not-leader",
			"leader-endpoint-host", host,
			"leader-endpoint-port", port,
		))
		return status.Error(codes.NotFound, "Leader info available")
	}
	if s.unavailable > 0 {
		s.unavailable--
		s.fired.Unavailable++
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "Server Is Not Ready")
	}
	s.appends++
	resp := s.appendLocked(name, exp, events)
	drop := false
	if resp.GetSuccess() != nil && s.dropReplies > 0 {
		s.dropReplies--
		s.fired.RepliesDropped++
		drop = true
	}
	s.mu.Unlock()
	if drop {
		// The events are committed; the reply is lost with the connection.
		s.cutConnection(stream.Context())
		return status.Error(codes.Unavailable, "esdbtest: connection cut after commit")
	}
	return stream.SendAndClose(resp)
}

// appendLocked is the server's commit check and write.
func (s *Server) appendLocked(name string, exp expectation, events []Record) *api.AppendResp {
	cur := int64(len(s.streams[name])) - 1 // -1: no stream
	recs := s.streams[name]

	switch exp.kind {
	case "stream_exists":
		if cur < 0 {
			return wrongExpected(exp, cur)
		}
		fallthrough
	case "any":
		// Idempotent when every ID is already stored in this stream.
		var last *Record
		for i, e := range events {
			r, ok := s.ids[e.ID]
			if !ok || r.Stream != name {
				if i == 0 {
					goto write
				}
				return wrongExpected(exp, cur) // corrupted idempotency
			}
			last = r
		}
		if last == nil {
			goto write
		}
		return success(last.Revision, last)
	case "no_stream", "revision":
		want := int64(-1)
		if exp.kind == "revision" {
			want = int64(exp.rev)
		}
		if want > cur {
			return wrongExpected(exp, cur)
		}
		if want < cur {
			n := want
			for _, e := range events {
				n++
				if n > cur || recs[n].ID != e.ID {
					return wrongExpected(exp, cur) // WEV, or corrupted idempotency past the first
				}
			}
			if n == want {
				return wrongExpected(exp, cur)
			}
			return success(uint64(n), recs[n])
		}
	}
write:
	if len(events) == 0 {
		if cur < 0 {
			return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
				CurrentRevisionOption: &api.AppendResp_Success_NoStream{NoStream: &shared.Empty{}},
				PositionOption:        &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
			}}}
		}
		return success(uint64(cur), recs[cur])
	}
	out := s.commitLocked(name, events)
	last := out[len(out)-1]
	return success(last.Revision, last)
}

func success(rev uint64, at *Record) *api.AppendResp {
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: rev},
		PositionOption: &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: at.Commit, PreparePosition: at.Prepare,
		}},
	}}}
}

func wrongExpected(exp expectation, cur int64) *api.AppendResp {
	w := &api.AppendResp_WrongExpectedVersion{}
	if cur < 0 {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(cur)}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(cur)}
	}
	switch exp.kind {
	case "any":
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	case "stream_exists":
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	case "no_stream":
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.rev}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.rev}
	}
	return &api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// filter is a decoded read or subscription filter.
type filter struct {
	onStream bool
	prefixes []string
	re       *regexp.Regexp
	interval int // checkpoint every this many considered events
}

func (f *filter) match(r *Record) bool {
	if f == nil {
		return true
	}
	s := r.Type
	if f.onStream {
		s = r.Stream
	}
	if f.re != nil {
		return f.re.MatchString(s)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func decodeFilter(o *api.ReadReq_Options) (*filter, error) {
	fo := o.GetFilter()
	if fo == nil {
		return nil, nil
	}
	f := &filter{}
	var ex *api.ReadReq_Options_FilterOptions_Expression
	switch x := fo.GetFilter().(type) {
	case *api.ReadReq_Options_FilterOptions_StreamIdentifier:
		f.onStream, ex = true, x.StreamIdentifier
	case *api.ReadReq_Options_FilterOptions_EventType:
		ex = x.EventType
	default:
		return nil, status.Error(codes.InvalidArgument, "filter without expression")
	}
	if ex.GetRegex() != "" {
		re, err := regexp.Compile(ex.GetRegex())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		f.re = re
	} else {
		f.prefixes = ex.GetPrefix()
	}
	window := 32
	if m, ok := fo.GetWindow().(*api.ReadReq_Options_FilterOptions_Max); ok && m.Max > 0 {
		window = int(m.Max)
	}
	mult := int(fo.GetCheckpointIntervalMultiplier())
	if mult <= 0 {
		mult = 1
	}
	f.interval = window * mult
	return f, nil
}

func (st *streamsService) Read(req *api.ReadReq, out api.Streams_ReadServer) error {
	s := st.s
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "missing options")
	}
	structured := o.GetUuidOption().GetString_() == nil
	flt, err := decodeFilter(o)
	if err != nil {
		return err
	}
	backwards := o.GetReadDirection() == api.ReadReq_Options_Backwards
	switch so := o.GetStreamOption().(type) {
	case *api.ReadReq_Options_Stream:
		if o.GetSubscription() != nil {
			return status.Error(codes.Unimplemented, "esdbtest: stream subscriptions are not implemented")
		}
		return s.readStream(so.Stream, o.GetCount(), backwards, structured, out)
	case *api.ReadReq_Options_All:
		if o.GetSubscription() != nil {
			return s.subscribeAll(so.All, flt, structured, out)
		}
		return s.readAll(so.All, o.GetCount(), backwards, flt, structured, out)
	}
	return status.Error(codes.InvalidArgument, "missing stream option")
}

func (s *Server) readStream(so *api.ReadReq_Options_StreamOptions, count uint64, backwards, structured bool, out api.Streams_ReadServer) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	s.mu.Lock()
	recs, ok := s.streams[name]
	recs = recs[:len(recs):len(recs)] // records are immutable once stored
	s.mu.Unlock()
	if !ok {
		return out.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	var sel []*Record
	switch r := so.GetRevisionOption().(type) {
	case *api.ReadReq_Options_StreamOptions_Start:
		if !backwards {
			sel = recs
		}
	case *api.ReadReq_Options_StreamOptions_End:
		if backwards {
			sel = recs
		}
	case *api.ReadReq_Options_StreamOptions_Revision:
		if backwards {
			if r.Revision < uint64(len(recs)) {
				sel = recs[:r.Revision+1]
			} else {
				sel = recs
			}
		} else if r.Revision < uint64(len(recs)) {
			sel = recs[r.Revision:]
		}
	}
	return sendRecords(out, sel, count, backwards, nil, structured)
}

func (s *Server) readAll(ao *api.ReadReq_Options_AllOptions, count uint64, backwards bool, flt *filter, structured bool, out api.Streams_ReadServer) error {
	s.mu.Lock()
	log := s.log[:len(s.log):len(s.log)]
	s.mu.Unlock()
	var sel []*Record
	switch p := ao.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Start:
		if !backwards {
			sel = log
		}
	case *api.ReadReq_Options_AllOptions_End:
		if backwards {
			sel = log
		}
	case *api.ReadReq_Options_AllOptions_Position:
		c, pr := p.Position.GetCommitPosition(), p.Position.GetPreparePosition()
		i := firstAtOrAfter(log, c, pr)
		if backwards {
			sel = log[:i] // strictly before the position
		} else {
			sel = log[i:] // from the position, inclusive
		}
	}
	return sendRecords(out, sel, count, backwards, flt, structured)
}

// firstAtOrAfter is the index of the first record at or after (c, p).
func firstAtOrAfter(log []*Record, c, p uint64) int {
	lo, hi := 0, len(log)
	for lo < hi {
		m := (lo + hi) / 2
		if log[m].Commit < c || (log[m].Commit == c && log[m].Prepare < p) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func sendRecords(out api.Streams_ReadServer, sel []*Record, count uint64, backwards bool, flt *filter, structured bool) error {
	sent := uint64(0)
	for i := range sel {
		if sent >= count {
			break
		}
		r := sel[i]
		if backwards {
			r = sel[len(sel)-1-i]
		}
		if !flt.match(r) {
			continue
		}
		if err := out.Send(eventResp(r, structured)); err != nil {
			return err
		}
		sent++
	}
	return nil
}

func (s *Server) subscribeAll(ao *api.ReadReq_Options_AllOptions, flt *filter, structured bool, out api.Streams_ReadServer) error {
	ctx := out.Context()
	s.mu.Lock()
	dropAfter := s.dropSubsAfter
	// Where to start: the index of the first record strictly after the
	// requested position (the server's subscriptions are exclusive).
	var idx int
	switch p := ao.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Start:
		idx = 0
	case *api.ReadReq_Options_AllOptions_End:
		idx = len(s.log)
	case *api.ReadReq_Options_AllOptions_Position:
		c, pr := p.Position.GetCommitPosition(), p.Position.GetPreparePosition()
		idx = firstAtOrAfter(s.log, c, pr)
		if idx < len(s.log) && s.log[idx].Commit == c && s.log[idx].Prepare == pr {
			idx++
		}
	}
	s.mu.Unlock()

	id := fmt.Sprintf("esdbtest-%p-%d", out, time.Now().UnixNano())
	if err := out.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: id}}}); err != nil {
		return err
	}
	var (
		sentEvents  int
		considered  int
		lastSent    *Record // last record reported, as event or checkpoint
		lastSeen    *Record // last record considered
		caughtUpYet bool
	)
	checkpoint := func(r *Record) error {
		lastSent = r
		return out.Send(&api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{
			CommitPosition: r.Commit, PreparePosition: r.Prepare,
		}}})
	}
	for {
		s.mu.Lock()
		batch := s.log[idx:len(s.log):len(s.log)]
		changed := s.changed
		s.mu.Unlock()
		for _, r := range batch {
			idx++
			lastSeen = r
			considered++
			if flt.match(r) {
				if err := out.Send(eventResp(r, structured)); err != nil {
					return err
				}
				lastSent = r
				sentEvents++
				if dropAfter > 0 && sentEvents >= dropAfter {
					s.mu.Lock()
					s.fired.SubscriptionsDropped++
					s.mu.Unlock()
					return status.Error(codes.Unavailable, "esdbtest: subscription dropped")
				}
			}
			if flt != nil && considered >= flt.interval {
				considered = 0
				if lastSent != r {
					if err := checkpoint(r); err != nil {
						return err
					}
				}
			}
		}
		// At the end of what is stored: a filtered subscription reports
		// how far it has looked, the first time it says it caught up.
		if flt != nil && lastSeen != nil && lastSent != lastSeen {
			considered = 0
			if err := checkpoint(lastSeen); err != nil {
				return err
			}
		}
		if !caughtUpYet {
			caughtUpYet = true
			if err := out.Send(&api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: &api.ReadResp_CaughtUp{}}}); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}

func eventResp(r *Record, structured bool) *api.ReadResp {
	var id *shared.UUID
	if structured {
		id = &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
			MostSignificantBits:  int64(binary.BigEndian.Uint64(r.ID[:8])),
			LeastSignificantBits: int64(binary.BigEndian.Uint64(r.ID[8:])),
		}}}
	} else {
		id = &shared.UUID{Value: &shared.UUID_String_{String_: eventstore.EventID(r.ID).String()}}
	}
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               id,
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.Stream)},
			StreamRevision:   r.Revision,
			PreparePosition:  r.Prepare,
			CommitPosition:   r.Commit,
			Metadata: map[string]string{
				"type":         r.Type,
				"content-type": r.ContentType,
				// .NET ticks (100 ns) since the Unix epoch, as the server sends.
				"created": strconv.FormatInt(r.Created.UnixNano()/100, 10),
			},
			CustomMetadata: r.Metadata,
			Data:           r.Data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.Commit},
	}}}
}

func uuidFromProto(u *shared.UUID) ([16]byte, error) {
	var id [16]byte
	switch v := u.GetValue().(type) {
	case *shared.UUID_Structured_:
		binary.BigEndian.PutUint64(id[:8], uint64(v.Structured.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(id[8:], uint64(v.Structured.GetLeastSignificantBits()))
		return id, nil
	case *shared.UUID_String_:
		// The client sends structured IDs; this is the other encoding.
		id, err := eventstore.ParseEventID(v.String_)
		if err != nil {
			return id, fmt.Errorf("bad event id %q", v.String_)
		}
		return id, nil
	}
	return id, errors.New("missing event id")
}
